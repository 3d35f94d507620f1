//! Whether a new password is one attackers try first: the 10,000 most common passwords, ones
//! common among Chinese-speaking users (numbers that read as words, pinyin with digits), any of
//! those with digits or symbols added at the end (`woaini1314520`, `password2026`), numbers
//! alone (dates, phone numbers, PINs) shorter than 16 digits, and the user's own name. Long
//! passphrases of ordinary words pass: length is what makes a password strong.
//!
//! The lists ship in the binary (`passwords/*.txt`); nothing is looked up over the network.

use std::collections::HashSet;
use std::sync::LazyLock;

static WEAK: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    [
        include_str!("passwords/common.txt"),
        include_str!("passwords/chinese.txt"),
    ]
    .iter()
    .flat_map(|list| list.lines())
    .map(str::trim)
    .filter(|line| !line.is_empty() && !line.starts_with('#'))
    .collect()
});

/// Digits-only passwords need at least this many digits.
pub const MIN_DIGITS_ONLY: usize = 16;

/// Why `password` is too easy to guess: an error code and a message, or `None`. `names` are the
/// user's username and display name, which the password must not contain.
pub fn weakness(password: &str, names: &[&str]) -> Option<(&'static str, String)> {
    let lower = password.trim().to_lowercase();
    if lower.chars().all(|c| c.is_ascii_digit()) && lower.len() < MIN_DIGITS_ONLY {
        return Some((
            "digits_only",
            format!(
                "Numbers alone (dates, phone numbers) are guessed first: use words, or at least {MIN_DIGITS_ONLY} digits"
            ),
        ));
    }
    let base = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    if WEAK.contains(lower.as_str())
        || WEAK.contains(compact.as_str())
        || (base.chars().count() >= 4 && WEAK.contains(base))
    {
        return Some((
            "common_password",
            "This is one of the passwords attackers try first; choose another (a few unrelated words make a strong one)".into(),
        ));
    }
    let contains_name = names
        .iter()
        .map(|name| name.trim().to_lowercase())
        // Three letters of a Latin name, or two characters of a Chinese one (张伟).
        .any(|name| {
            let enough = if name.is_ascii() { 3 } else { 2 };
            name.chars().count() >= enough && lower.contains(&name)
        });
    if contains_name {
        return Some((
            "contains_name",
            "Do not use your username or name in the password".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_attackers_try_first_are_refused() {
        let names = ["zhangwei", "张伟"];
        for weak in [
            "1234567890",
            "woaini1314520",
            "password2026",
            "Password!",
            "qwertyuiop",
            "5201314520",
            "13800138000",
            "19900101",
            "zhangwei2026",
            "我是张伟的密码",
            "iloveyou",
            "1qaz2wsx3edc",
            "admin123456",
            "abc123456",
        ] {
            assert!(weakness(weak, &names).is_some(), "{weak} was accepted");
        }
        for strong in [
            "correct horse battery staple",
            "青山不改绿水长流2026",
            "1234567890123456",
            "tea kettle on the windowsill",
            &"a long passphrase that keeps going ".repeat(3),
        ] {
            assert_eq!(weakness(strong, &names), None, "{strong} was refused");
        }
        assert!(WEAK.len() > 10_000, "both lists are loaded: {}", WEAK.len());
    }
}
