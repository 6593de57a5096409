//! robots.txt, as RFC 9309 reads it (parsed by `texting_robots`): rules for our product token
//! `KAI-Fusion` (else `*`); a robots.txt that does not exist (4xx) allows everything, one that
//! cannot be read (5xx, no answer) allows nothing until it can.

use texting_robots::Robot;

/// The product token rules are looked up for (a `User-agent: KAI-Fusion` group).
pub const ROBOTS_AGENT: &str = "KAI-Fusion";

/// What a site's robots.txt says for us.
#[derive(Debug)]
pub enum RobotsRules {
    AllowAll,
    /// robots.txt could not be read: nothing may be fetched (the reason, for the error).
    DisallowAll(String),
    Rules(Box<Robot>),
}

impl RobotsRules {
    /// From robots.txt's answer: its status and body.
    pub fn from_answer(status: u16, body: &[u8]) -> Self {
        match status {
            200..=299 => match Robot::new(ROBOTS_AGENT, body) {
                Ok(robot) => RobotsRules::Rules(Box::new(robot)),
                // Unparseable: as if there were none.
                Err(_) => RobotsRules::AllowAll,
            },
            400..=499 => RobotsRules::AllowAll,
            other => RobotsRules::DisallowAll(format!("robots.txt answered {other}")),
        }
    }

    /// Whether `url` may be fetched; the reason when not.
    pub fn check(&self, url: &str) -> Result<(), String> {
        match self {
            RobotsRules::AllowAll => Ok(()),
            RobotsRules::DisallowAll(reason) => Err(format!(
                "robots.txt could not be read ({reason}), so nothing on this site is fetched"
            )),
            RobotsRules::Rules(robot) if robot.allowed(url) => Ok(()),
            RobotsRules::Rules(_) => Err("robots.txt disallows this page".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_for_our_token_apply_and_a_missing_file_allows_everything() {
        let txt =
            b"User-agent: *\nDisallow: /private\n\nUser-agent: KAI-Fusion\nDisallow: /no-bots\n";
        let rules = RobotsRules::from_answer(200, txt);
        assert!(rules.check("https://a.example/no-bots/page").is_err());
        // Our own group replaces `*`'s.
        assert!(rules.check("https://a.example/private").is_ok());
        assert!(
            RobotsRules::from_answer(404, b"")
                .check("https://a.example/x")
                .is_ok()
        );
        let unreachable = RobotsRules::from_answer(503, b"");
        assert!(
            unreachable
                .check("https://a.example/x")
                .unwrap_err()
                .contains("503")
        );
    }
}
