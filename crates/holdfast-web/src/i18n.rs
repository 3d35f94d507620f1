//! The interface languages: translation files, the choice of language per request, and the
//! formats of dates, numbers and money in each language.
//!
//! Translations live in `locales/*.toml` (sections flatten to dotted keys: `[field.contact]
//! name = …` is `field.contact.name`). Both files must hold the same keys; a test checks that,
//! and that every key the pages ask for exists. A missing key shows as the key itself, never as
//! an empty label.

use holdfast_domain::Timestamp;
use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    ZhCn,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::ZhCn];

    /// The tag stored in the user's settings and used in `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::ZhCn => "zh-CN",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Locale> {
        Locale::ALL.into_iter().find(|l| l.tag() == tag)
    }

    /// The first language of an `Accept-Language` header we speak, by the client's weights.
    pub fn from_accept_language(header: &str) -> Option<Locale> {
        let mut ranges: Vec<(f32, &str)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let range = pieces.next()?.trim();
                let weight = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((weight, range))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges.into_iter().find_map(|(weight, range)| {
            let primary = range.split('-').next()?.to_ascii_lowercase();
            match primary.as_str() {
                _ if weight <= 0.0 => None,
                "zh" => Some(Locale::ZhCn),
                "en" => Some(Locale::En),
                _ => None,
            }
        })
    }

    fn source(self) -> &'static str {
        match self {
            Locale::En => include_str!("../locales/en.toml"),
            Locale::ZhCn => include_str!("../locales/zh-CN.toml"),
        }
    }

    fn table(self) -> &'static HashMap<String, String> {
        static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| load(Locale::En));
        static ZH: LazyLock<HashMap<String, String>> = LazyLock::new(|| load(Locale::ZhCn));
        match self {
            Locale::En => &EN,
            Locale::ZhCn => &ZH,
        }
    }
}

/// Parses a translation file. A file that does not parse is a build mistake the tests catch;
/// at run time it leaves the table empty, so pages show keys instead of failing.
fn load(locale: Locale) -> HashMap<String, String> {
    let mut out = HashMap::new();
    match locale.source().parse::<toml::Table>() {
        Ok(table) => flatten("", &table, &mut out),
        Err(error) => tracing::error!(locale = locale.tag(), %error, "translation file unreadable"),
    }
    out
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            toml::Value::String(text) => {
                out.insert(key, text.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

/// The translator and formatter for one request.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub locale: Locale,
    /// The team's time zone, minutes east of UTC.
    pub utc_offset_minutes: i64,
}

impl Tr {
    pub fn new(locale: Locale, utc_offset_minutes: i64) -> Tr {
        Tr {
            locale,
            utc_offset_minutes,
        }
    }

    /// The text for `key`, or the key itself when it is missing.
    pub fn t<'a>(&self, key: &'a str) -> &'a str
    where
        'static: 'a,
    {
        self.get(key).unwrap_or(key)
    }

    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.locale.table().get(key).map(String::as_str)
    }

    /// The text for `key` with `{name}` placeholders filled in.
    pub fn f(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut text = self.get(key).unwrap_or(key).to_owned();
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), &value.to_string());
        }
        text
    }

    /// A translated label for a dynamic key (`stage.lead`), or `fallback` when there is none:
    /// values a team defines itself, such as its own pipeline stages, have no translation.
    pub fn or<'a>(&self, key: &str, fallback: &'a str) -> &'a str {
        self.get(key).unwrap_or(fallback)
    }

    fn local(&self, at: Timestamp) -> Option<time::OffsetDateTime> {
        let offset =
            time::UtcOffset::from_whole_seconds(i32::try_from(self.utc_offset_minutes * 60).ok()?)
                .ok()?;
        let nanos = i128::from(at.micros()) * 1000;
        Some(
            time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()?
                .to_offset(offset),
        )
    }

    /// `29 Nov 2026, 14:05` / `2026年11月29日 14:05`, in the team's time zone.
    pub fn datetime(&self, at: Timestamp) -> String {
        let Some(t) = self.local(at) else {
            return at.to_rfc3339();
        };
        match self.locale {
            Locale::En => format!(
                "{} {} {}, {:02}:{:02}",
                t.day(),
                MONTHS[usize::from(u8::from(t.month())) - 1],
                t.year(),
                t.hour(),
                t.minute()
            ),
            Locale::ZhCn => format!(
                "{}年{}月{}日 {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
        }
    }

    /// A calendar date given as `YYYY-MM-DD`.
    pub fn date(&self, text: &str) -> String {
        let parts: Vec<&str> = text.split('-').collect();
        let [year, month, day] = parts[..] else {
            return text.to_owned();
        };
        let (Ok(m), Ok(d)) = (month.parse::<usize>(), day.parse::<u32>()) else {
            return text.to_owned();
        };
        match self.locale {
            Locale::En if (1..=12).contains(&m) => format!("{d} {} {year}", MONTHS[m - 1]),
            Locale::ZhCn => format!("{year}年{m}月{d}日"),
            _ => text.to_owned(),
        }
    }

    /// The value for an `<input type="datetime-local">` in the team's time zone.
    pub fn datetime_input(&self, at: Timestamp) -> String {
        match self.local(at) {
            Some(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
            None => String::new(),
        }
    }

    /// RFC 3339 for a `datetime-local` value (`2026-11-29T14:05`) in the team's time zone.
    pub fn parse_datetime_input(&self, text: &str) -> Option<String> {
        let (date, clock) = text.trim().split_once('T')?;
        let clock = match clock.len() {
            5 => format!("{clock}:00"),
            8 => clock.to_owned(),
            _ => return None,
        };
        let minutes = self.utc_offset_minutes;
        let sign = if minutes < 0 { '-' } else { '+' };
        let rfc = format!(
            "{date}T{clock}{sign}{:02}:{:02}",
            minutes.abs() / 60,
            minutes.abs() % 60
        );
        Timestamp::parse_rfc3339(&rfc).map(|t| t.to_rfc3339())
    }

    /// `1,234,567` (both languages group digits in threes).
    pub fn number(&self, n: i64) -> String {
        group_thousands(&n.unsigned_abs().to_string(), n < 0)
    }

    /// Money from minor units: `¥1,234.50`, `$99.00`, `CHF 10.00`.
    pub fn money(&self, minor: i64, currency: &str) -> String {
        let major = group_thousands(&(minor.unsigned_abs() / 100).to_string(), minor < 0);
        let cents = minor.unsigned_abs() % 100;
        let symbol = match (currency, self.locale) {
            ("CNY", _) => "¥",
            ("USD", Locale::En) => "$",
            ("USD", Locale::ZhCn) => "US$",
            ("EUR", _) => "€",
            ("GBP", _) => "£",
            ("HKD", _) => "HK$",
            ("JPY", _) => "JP¥",
            _ => return format!("{currency} {major}.{cents:02}"),
        };
        format!("{symbol}{major}.{cents:02}")
    }

    /// The amount as a person types it into a form: `1234.50`.
    pub fn money_input(&self, minor: i64) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        format!(
            "{sign}{}.{:02}",
            minor.unsigned_abs() / 100,
            minor.unsigned_abs() % 100
        )
    }
}

/// Minor units from what a person typed: `1234.5`, `1,234.50`, `¥1234`. `None` if unreadable.
pub fn parse_money_input(text: &str) -> Option<i64> {
    let cleaned: String = text
        .trim()
        .trim_start_matches(['¥', '$', '€', '£', '￥'])
        .chars()
        .filter(|c| *c != ',' && *c != '，' && !c.is_whitespace())
        .collect();
    let (whole, fraction) = match cleaned.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (cleaned.as_str(), ""),
    };
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > 2
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let cents: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(cents)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn group_thousands(digits: &str, negative: bool) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if negative { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(locale: Locale) -> BTreeSet<String> {
        locale.table().keys().cloned().collect()
    }

    #[test]
    fn both_translation_files_parse_and_hold_the_same_keys() {
        for locale in Locale::ALL {
            assert!(
                locale.source().parse::<toml::Table>().is_ok(),
                "{} does not parse",
                locale.tag()
            );
            assert!(keys(locale).len() > 100, "{} is nearly empty", locale.tag());
        }
        let en = keys(Locale::En);
        let zh = keys(Locale::ZhCn);
        let only_en: Vec<_> = en.difference(&zh).collect();
        let only_zh: Vec<_> = zh.difference(&en).collect();
        assert!(only_en.is_empty(), "missing in zh-CN.toml: {only_en:?}");
        assert!(only_zh.is_empty(), "missing in en.toml: {only_zh:?}");
        for locale in Locale::ALL {
            for (key, text) in locale.table() {
                assert!(!text.trim().is_empty(), "{}: {key} is empty", locale.tag());
            }
        }
    }

    /// Every literal key the pages use exists; dynamic keys (field
    /// labels, error codes, choices) are checked against the domain's own tables below.
    #[test]
    fn every_key_the_pages_use_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/views");
        let en = keys(Locale::En);
        let sections: BTreeSet<&str> = en.iter().filter_map(|k| k.split('.').next()).collect();
        let mut missing = Vec::new();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            // Every string literal shaped like a key of a known section (`"nav.home"`).
            for literal in source.split('"').skip(1).step_by(2) {
                let looks_like_key = literal.contains('.')
                    && !literal.ends_with('.')
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                    && sections.contains(literal.split('.').next().unwrap_or_default());
                if looks_like_key {
                    seen += 1;
                    if !en.contains(literal) {
                        missing.push(format!("{}: {literal}", path.display()));
                    }
                }
            }
        }
        assert!(seen > 100, "the scan found only {seen} keys");
        assert!(
            missing.is_empty(),
            "keys used but not translated: {missing:#?}"
        );
    }

    #[test]
    fn every_field_choice_and_entity_has_a_label() {
        use holdfast_domain::Entity;
        use holdfast_domain::entity::FieldKind;
        let en = keys(Locale::En);
        let mut missing = Vec::new();
        for entity in Entity::ALL {
            for key in [
                format!("entity.{}.one", entity.name()),
                format!("entity.{}.many", entity.name()),
            ] {
                if !en.contains(&key) {
                    missing.push(key);
                }
            }
            for def in entity.fields() {
                let key = format!("field.{}.{}", entity.name(), def.name);
                if !en.contains(&key) {
                    missing.push(key);
                }
                if let FieldKind::Choice(values) = def.kind {
                    for value in values {
                        let key = format!("choice.{}.{value}", def.name);
                        if !en.contains(&key) {
                            missing.push(key);
                        }
                    }
                }
            }
        }
        for code in crate::views::ERROR_CODES {
            let key = format!("error.{code}");
            if !en.contains(&key) {
                missing.push(key);
            }
        }
        assert!(missing.is_empty(), "no label for: {missing:?}");
    }

    #[test]
    fn accept_language_picks_the_best_language_we_speak() {
        let pick = Locale::from_accept_language;
        assert_eq!(pick("zh-CN,zh;q=0.9,en;q=0.8"), Some(Locale::ZhCn));
        assert_eq!(pick("en-US,en;q=0.9"), Some(Locale::En));
        assert_eq!(pick("fr-FR, en;q=0.5, zh;q=0.7"), Some(Locale::ZhCn));
        assert_eq!(pick("de, fr"), None);
        assert_eq!(pick("zh;q=0, en;q=0.1"), Some(Locale::En));
        assert_eq!(pick(""), None);
    }

    #[test]
    fn dates_numbers_and_money_follow_the_language() {
        let en = Tr::new(Locale::En, 8 * 60);
        let zh = Tr::new(Locale::ZhCn, 8 * 60);
        let at = Timestamp::parse_rfc3339("2026-11-29T06:05:00Z").unwrap();
        assert_eq!(en.datetime(at), "29 Nov 2026, 14:05");
        assert_eq!(zh.datetime(at), "2026年11月29日 14:05");
        assert_eq!(en.date("2026-03-07"), "7 Mar 2026");
        assert_eq!(zh.date("2026-03-07"), "2026年3月7日");
        assert_eq!(en.number(1234567), "1,234,567");
        assert_eq!(zh.money(123450, "CNY"), "¥1,234.50");
        assert_eq!(en.money(-5, "USD"), "$-0.05");
        assert_eq!(zh.money(100, "USD"), "US$1.00");
        assert_eq!(en.money(100_000, "CHF"), "CHF 1,000.00");
        assert_eq!(en.datetime_input(at), "2026-11-29T14:05");
        assert_eq!(
            en.parse_datetime_input("2026-11-29T14:05").as_deref(),
            Some("2026-11-29T06:05:00Z")
        );
        assert_eq!(en.parse_datetime_input("tomorrow"), None);
    }

    #[test]
    fn money_input_reads_what_people_type() {
        assert_eq!(parse_money_input("1234.5"), Some(123450));
        assert_eq!(parse_money_input("¥1,234.56"), Some(123456));
        assert_eq!(parse_money_input(" 80 "), Some(8000));
        for bad in ["", "abc", "1.234", "-5", "1e3", "."] {
            assert_eq!(parse_money_input(bad), None, "{bad}");
        }
    }
}
