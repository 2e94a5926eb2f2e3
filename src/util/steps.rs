//! `-s/--step` selections: `0,3-5,9`.

use std::str::FromStr;

/// The largest step number: steps are two-digit numbers, like upstream's.
pub const MAX_STEP: u32 = 99;

/// A set of step numbers, or all steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepSelection(pub Option<Vec<u32>>);

impl StepSelection {
    pub fn contains(&self, step: u32) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(&step))
    }
}

impl FromStr for StepSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut steps = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parse = |x: &str| match x.trim().parse::<u32>() {
                Ok(n) if n <= MAX_STEP => Ok(n),
                Ok(n) => Err(format!("step {n} does not exist: steps are numbered 0 to {MAX_STEP}")),
                Err(_) => Err(format!("'{x}' is not a step number (expected e.g. 0,3-5)")),
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (parse(a)?, parse(b)?);
                    if a > b {
                        return Err(format!("step range '{part}' is backwards"));
                    }
                    steps.extend(a..=b);
                }
                None => steps.push(parse(part)?),
            }
        }
        if steps.is_empty() {
            return Err("empty step list (expected e.g. 0,3-5)".into());
        }
        steps.sort_unstable();
        steps.dedup();
        Ok(StepSelection(Some(steps)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!("0,3-5,9".parse::<StepSelection>().unwrap().0, Some(vec![0, 3, 4, 5, 9]));
        assert_eq!("5,1-2,2".parse::<StepSelection>().unwrap().0, Some(vec![1, 2, 5]));
        assert!("3-1".parse::<StepSelection>().is_err());
        assert!("x".parse::<StepSelection>().is_err());
        assert!("".parse::<StepSelection>().is_err());
        assert!(StepSelection::default().contains(7));
        // A huge range is refused before anything is allocated.
        assert!("0-4294967295".parse::<StepSelection>().unwrap_err().contains("numbered 0 to 99"));
        assert_eq!("0-99".parse::<StepSelection>().unwrap().0.map(|v| v.len()), Some(100));
    }
}
