//! The rules a new password must meet, at signup and at a password change: 8 to 1,024
//! characters, and not the email address nor its part before the `@` (ignoring case).

/// Shorter passwords fall to guessing too quickly.
pub const MIN_LEN: usize = 8;
/// Argon2 hashes whatever it is given; an unbounded password is a cheap way to burn CPU.
pub const MAX_LEN: usize = 1024;

/// Why `password` cannot be `email`'s password, naming the field.
pub fn check(password: &str, email: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Err(format!("password: must be at least {MIN_LEN} characters"));
    }
    if length > MAX_LEN {
        return Err(format!("password: must be at most {MAX_LEN} characters"));
    }
    if is_the_email(password, email) {
        return Err("password: must not be the email address or its part before the @".into());
    }
    Ok(())
}

/// Whether `password` is `email` or its local part, ignoring case and surrounding spaces: the
/// first guess of anyone who knows the address.
fn is_the_email(password: &str, email: &str) -> bool {
    let password = password.trim().to_lowercase();
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    password == email || password == local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_may_not_be_the_email_or_its_local_part() {
        let email = "ada.lovelace@example.com";
        assert!(is_the_email("ada.lovelace@example.com", email));
        assert!(is_the_email("Ada.Lovelace@Example.com ", email));
        assert!(is_the_email("ADA.LOVELACE", email));
        assert!(!is_the_email("ada.lovelace-1843", email));
        assert!(!is_the_email("correct-horse-battery", email));
        assert!(check("ADA.LOVELACE", email).unwrap_err().contains("email"));
    }

    #[test]
    fn length_is_bounded_both_ways() {
        let email = "a@b.co";
        assert!(check("short", email).unwrap_err().contains("at least 8"));
        assert!(
            check(&"x".repeat(1025), email)
                .unwrap_err()
                .contains("at most 1024")
        );
        assert!(check(&"é".repeat(8), email).is_ok());
        assert!(check(&"x".repeat(1024), email).is_ok());
    }
}
