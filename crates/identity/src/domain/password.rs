use super::Invalid;

/// Fewest characters in a password.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Most characters in a password (well above the 64 that must be allowed).
pub const PASSWORD_MAX_CHARS: usize = 256;

/// A password chosen by a person, checked against the policy: 8 to 256 characters, no
/// composition rules, and refused when a strength estimator finds it among the most common
/// passwords or guessable from the person's own email or name.
#[derive(Clone)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

impl NewPassword {
    /// Checks `raw`; `context` holds the person's email and name, which the password must not
    /// be built from.
    pub fn parse(raw: &str, context: &[&str]) -> Result<Self, Invalid> {
        let length = raw.chars().count();
        if length < PASSWORD_MIN_CHARS {
            return Err(Invalid(format!(
                "password must have at least {PASSWORD_MIN_CHARS} characters"
            )));
        }
        if length > PASSWORD_MAX_CHARS {
            return Err(Invalid(format!(
                "password must have at most {PASSWORD_MAX_CHARS} characters"
            )));
        }
        // The estimator's cost grows quickly with length; a prefix of 64 characters that is
        // not guessable makes the whole password not guessable.
        let prefix: String = raw.chars().take(64).collect();
        if built_from(raw, context) {
            return Err(Invalid(
                "this password is built from your email or name; choose something unrelated".into(),
            ));
        }
        let estimate = zxcvbn::zxcvbn(&prefix, context);
        if (estimate.score() as u8) < 2 {
            return Err(Invalid(
                "this password is too common or too easy to guess; a few unrelated words make a \
                 strong one"
                    .into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Lower-case letters and digits only.
fn letters(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether little is left of `password` once the person's own words are taken out: their
/// email's local part, its pieces and their name's pieces ("ada.lovelace1" for
/// ada.lovelace@example.org).
fn built_from(password: &str, context: &[&str]) -> bool {
    let mut words: Vec<String> = Vec::new();
    for text in context {
        let local = text.split('@').next().unwrap_or(text);
        words.push(letters(local));
        words.extend(
            text.split(|c: char| !c.is_alphanumeric())
                .map(letters)
                .filter(|word| word.chars().count() >= 3),
        );
    }
    words.sort_by_key(|word| std::cmp::Reverse(word.len()));
    let mut rest = letters(password);
    for word in words.iter().filter(|word| word.chars().count() >= 3) {
        rest = rest.replace(word.as_str(), "");
    }
    rest.chars().count() < 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_refused() {
        for common in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
            "password123",
            "letmein!",
        ] {
            assert!(
                NewPassword::parse(common, &[]).is_err(),
                "{common} was accepted"
            );
        }
    }

    #[test]
    fn a_password_built_from_the_email_is_refused() {
        assert!(
            NewPassword::parse(
                "ada.lovelace1",
                &["ada.lovelace@example.org", "Ada Lovelace"]
            )
            .is_err()
        );
    }

    #[test]
    fn unrelated_passwords_are_not_mistaken_for_the_email() {
        let context = ["athlete-1234@example.org", "Test Athlete"];
        assert!(NewPassword::parse("violet quartz lantern 42", &context).is_ok());
        assert!(NewPassword::parse("Athlete!2024", &context).is_err());
    }

    #[test]
    fn long_passphrases_without_composition_rules_are_accepted() {
        assert!(NewPassword::parse("correct horse battery staple", &[]).is_ok());
        let sixty_four: String = "tangerine-volcano-".repeat(4).chars().take(64).collect();
        assert!(NewPassword::parse(&sixty_four, &[]).is_ok());
        assert!(NewPassword::parse(&"violet quartz ".repeat(18), &[]).is_ok());
    }

    #[test]
    fn length_limits_hold() {
        assert!(NewPassword::parse("x7#Kq2", &[]).is_err());
        assert!(NewPassword::parse(&"a".repeat(PASSWORD_MAX_CHARS + 1), &[]).is_err());
    }
}
