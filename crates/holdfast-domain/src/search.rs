//! The terms a record is found by, and how a search box query becomes term lookups.
//!
//! The index is one table of `(entity, term, record_id)` rows on both backends. Three kinds of
//! term make the three kinds of query fast, because each becomes an indexed equality or a range
//! scan on a prefix:
//! - Latin words (`zhang`, `example`): a query word matches any indexed word it is a prefix of.
//! - Chinese, Japanese and Korean text: every single character and every pair of neighbouring
//!   characters. A two-character query such as 张伟 is one exact lookup and finds 张伟 and 张伟明;
//!   a longer one must match all its pairs. (SQLite's trigram tokenizer cannot do two characters.)
//! - Digit groups, prefixed with `#`: every run of 4 digits in a phone number (or in any number
//!   of 4+ digits), so the last four digits, or any four or more in a row, find the number.

use crate::entity::{Entity, Searchable};
use crate::record::Record;
use serde_json::Value;
use std::collections::BTreeSet;

/// Longest word kept in the index; longer words are cut (a prefix query still finds them).
const MAX_WORD_CHARS: usize = 40;
const DIGIT_GRAM: usize = 4;
const PHONE_MARK: char = '#';
/// Queries beyond this many lookups are refused rather than left to scan.
pub const MAX_QUERY_TERMS: usize = 16;

/// How one query term is looked up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TermMatch {
    Exact(String),
    Prefix(String),
}

impl TermMatch {
    /// Whether one of a record's `terms` (see [`terms_for`]) matches.
    pub fn matches_any(&self, terms: &BTreeSet<String>) -> bool {
        match self {
            TermMatch::Exact(term) => terms.contains(term),
            TermMatch::Prefix(prefix) => terms
                .range(prefix.clone()..)
                .next()
                .is_some_and(|t| t.starts_with(prefix.as_str())),
        }
    }
}

/// Every search term of a record; empty for a record in the recycle bin, which no search finds.
pub fn terms_for(record: &Record) -> BTreeSet<String> {
    let mut terms = BTreeSet::new();
    if record.is_deleted() {
        return terms;
    }
    for def in record.entity.fields() {
        let Some(Value::String(text)) = record.fields.get(def.name) else {
            continue;
        };
        match def.search {
            Searchable::No => {}
            Searchable::Text => text_terms(text, &mut terms),
            Searchable::Phone => {
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                digit_grams(&digits, &mut terms);
                // The whole number as a word, so that its first digits find it too.
                if !digits.is_empty() {
                    terms.insert(cut(&digits));
                }
            }
        }
    }
    terms
}

fn text_terms(text: &str, terms: &mut BTreeSet<String>) {
    for token in tokens(&text.to_lowercase()) {
        match token {
            Token::Cjk(chars) => {
                for (index, c) in chars.iter().enumerate() {
                    terms.insert(c.to_string());
                    if let Some(next) = chars.get(index + 1) {
                        terms.insert([*c, *next].iter().collect());
                    }
                }
            }
            Token::Word(word) => {
                if word.chars().all(|c| c.is_ascii_digit()) {
                    digit_grams(&word, terms);
                }
                terms.insert(cut(&word));
            }
        }
    }
}

fn digit_grams(digits: &str, terms: &mut BTreeSet<String>) {
    let bytes = digits.as_bytes();
    if bytes.len() < DIGIT_GRAM {
        return;
    }
    for window in bytes.windows(DIGIT_GRAM) {
        let mut term = String::with_capacity(DIGIT_GRAM + 1);
        term.push(PHONE_MARK);
        term.extend(window.iter().map(|b| char::from(*b)));
        terms.insert(term);
    }
}

/// Turns what a person typed into lookups that must all match. `None` when the query holds
/// nothing searchable (only punctuation, say) or is too long to answer quickly.
pub fn parse_query(query: &str) -> Option<Vec<TermMatch>> {
    let mut matches = BTreeSet::new();
    // A query that looks like (part of) a phone number is one digit string, however it is
    // spaced: "+86 138" and "0013-8000" are searched as 86138 and 00138000.
    let is_phone_like = query.chars().any(|c| c.is_ascii_digit())
        && query
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let query = if is_phone_like {
        query.chars().filter(char::is_ascii_digit).collect()
    } else {
        query.to_lowercase()
    };
    for token in tokens(&query) {
        match token {
            Token::Cjk(chars) if chars.len() == 1 => {
                matches.insert(TermMatch::Exact(chars[0].to_string()));
            }
            Token::Cjk(chars) => {
                for pair in chars.windows(2) {
                    matches.insert(TermMatch::Exact(pair.iter().collect()));
                }
            }
            Token::Word(word)
                if word.len() >= DIGIT_GRAM && word.chars().all(|c| c.is_ascii_digit()) =>
            {
                let mut grams = BTreeSet::new();
                digit_grams(&word, &mut grams);
                matches.extend(grams.into_iter().map(TermMatch::Exact));
            }
            Token::Word(word) => {
                matches.insert(TermMatch::Prefix(cut(&word)));
            }
        }
    }
    if matches.is_empty() || matches.len() > MAX_QUERY_TERMS {
        return None;
    }
    Some(matches.into_iter().collect())
}

/// The entity whose title is searched alongside a record's own terms, if any: a contact is found
/// by its company's name too.
pub fn also_found_via(entity: Entity) -> Option<(Entity, &'static str)> {
    match entity {
        Entity::Contact => Some((Entity::Company, "company_id")),
        _ => None,
    }
}

enum Token {
    Cjk(Vec<char>),
    Word(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut cjk: Vec<char> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(Token::Word(std::mem::take(&mut word)));
            }
            cjk.push(c);
        } else if c.is_alphanumeric() {
            if !cjk.is_empty() {
                out.push(Token::Cjk(std::mem::take(&mut cjk)));
            }
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(Token::Word(std::mem::take(&mut word)));
            }
            if !cjk.is_empty() {
                out.push(Token::Cjk(std::mem::take(&mut cjk)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Token::Word(word));
    }
    if !cjk.is_empty() {
        out.push(Token::Cjk(cjk));
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3400..=0x4DBF   // CJK Extension A
        | 0x4E00..=0x9FFF   // CJK Unified Ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F // Extensions B and later
    )
}

fn cut(word: &str) -> String {
    word.chars().take(MAX_WORD_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::contact;

    /// Does `query` find a record with these terms? The same rule the SQL applies.
    fn finds(query: &str, record: &Record) -> bool {
        let terms = terms_for(record);
        parse_query(query).unwrap().iter().all(|m| match m {
            TermMatch::Exact(t) => terms.contains(t),
            TermMatch::Prefix(p) => terms.iter().any(|t| t.starts_with(p.as_str())),
        })
    }

    #[test]
    fn two_chinese_characters_find_longer_names() {
        let zhang_wei = contact(1, "张伟");
        let zhang_wei_ming = contact(2, "张伟明");
        let wang_wei = contact(3, "王伟");
        for record in [&zhang_wei, &zhang_wei_ming] {
            assert!(finds("张伟", record));
        }
        assert!(!finds("张伟", &wang_wei));
        assert!(finds("伟明", &zhang_wei_ming));
        assert!(finds("张", &zhang_wei));
        assert!(!finds("张伟明", &zhang_wei));
    }

    #[test]
    fn phone_numbers_are_found_by_any_four_digits() {
        let mut record = contact(1, "Li Lei");
        record
            .fields
            .insert("mobile".into(), "+86 138-0013-8000".into());
        assert!(finds("8000", &record));
        assert!(finds("0013 8000", &record));
        assert!(finds("13800138000", &record));
        assert!(finds("+86 138", &record));
        assert!(!finds("9999", &record));
    }

    #[test]
    fn latin_words_match_by_prefix_and_emails_by_their_parts() {
        let mut record = contact(1, "Zhang Wei");
        record
            .fields
            .insert("email".into(), "zhang.wei@Example.com".into());
        assert!(finds("zha", &record));
        assert!(finds("WEI zhang", &record));
        assert!(finds("zhang.wei@exam", &record));
        assert!(!finds("wang", &record));
    }

    #[test]
    fn deleted_records_have_no_terms_and_junk_queries_are_refused() {
        let mut record = contact(1, "Gone");
        record.deleted = Some(crate::record::Deletion {
            at: crate::time::Timestamp(1),
            by: 1,
            root_entity: Entity::Contact,
            root_id: 1,
        });
        assert!(terms_for(&record).is_empty());
        assert_eq!(parse_query(" ,.; "), None);
        assert_eq!(
            parse_query(&"x ".repeat(40)),
            Some(vec![TermMatch::Prefix("x".into())])
        );
        let many_words: String = (0..40).map(|n| format!("w{n} ")).collect();
        assert_eq!(parse_query(&many_words), None);
    }
}
