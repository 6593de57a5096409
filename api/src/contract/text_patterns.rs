//! Regular expressions (ECMA-262, also read alike by Python's `re`, which schemathesis uses)
//! for the text rules the handlers apply: no NUL, not blank once trimmed, no control
//! characters. Whitespace is what Rust's `str::trim` removes (Unicode `White_Space`), spelled
//! out because `\s` differs between regex dialects.

/// Unicode `White_Space`, as a character-class body.
const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// Unicode control characters (`char::is_control`, general category Cc), as a class body.
const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";

/// Any text without NUL.
pub fn no_nul() -> String {
    r"^[^\x00]*$".to_owned()
}

/// Text without NUL holding at least one character that is not whitespace.
pub fn not_blank() -> String {
    format!(r"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$")
}

/// Text that, trimmed of whitespace, is not empty and holds no control character.
pub fn trimmed_name() -> String {
    format!(
        r"^[{WHITESPACE}]*[^{CONTROL}{WHITESPACE}]([^{CONTROL}]*[^{CONTROL}{WHITESPACE}])?[{WHITESPACE}]*$"
    )
}

/// Exactly one of `words`, letters in any case.
pub fn one_of_any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        regex_escape(c)
                    }
                })
                .collect()
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

/// A list separated by commas with at least one item that is not whitespace.
pub fn comma_list_with_an_item() -> String {
    format!(r"^[^\x00]*[^\x00,{WHITESPACE}][^\x00]*$")
}

fn regex_escape(c: char) -> String {
    if r"\^$.|?*+()[]{}/-".contains(c) {
        format!(r"\{c}")
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    /// The patterns agree with the Rust checks they describe, character for character.
    #[test]
    fn patterns_agree_with_the_rust_rules() {
        let not_blank_re = Regex::new(&not_blank()).unwrap();
        let name_re = Regex::new(&trimmed_name()).unwrap();
        for c in (0u32..0x3100).filter_map(char::from_u32) {
            let text = format!("{c}");
            assert_eq!(
                not_blank_re.is_match(&text),
                c != '\0' && !c.is_whitespace(),
                "not_blank {c:?}"
            );
            let trimmed = text.trim();
            let name_ok = !trimmed.is_empty() && !trimmed.chars().any(char::is_control);
            assert_eq!(name_re.is_match(&text), name_ok, "trimmed_name {c:?}");
            let padded = format!("{c}a{c}");
            let trimmed = padded.trim();
            assert_eq!(
                name_re.is_match(&padded),
                !trimmed.chars().any(char::is_control),
                "trimmed_name {padded:?}"
            );
        }
        let methods = Regex::new(&one_of_any_case(&["GET", "POST"])).unwrap();
        assert!(methods.is_match("get") && methods.is_match("PoSt"));
        assert!(!methods.is_match("GETS") && !methods.is_match("PUT"));
    }
}
