use serde::{Deserialize, Serialize};

/// Where a workout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created ahead of time, not started.
    Planned,
    /// Recording.
    Active,
    /// Recording paused.
    Paused,
    /// Done; has a summary.
    Finished,
    /// Thrown away.
    Discarded,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Planned => "planned",
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Finished => "finished",
            Status::Discarded => "discarded",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(stored: &str) -> Option<Self> {
        [
            Status::Planned,
            Status::Active,
            Status::Paused,
            Status::Finished,
            Status::Discarded,
        ]
        .into_iter()
        .find(|status| status.as_str() == stored)
    }
}

/// A lifecycle step requested through `POST /v1/activities/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// planned → active
    Start,
    /// active → paused
    Pause,
    /// paused → active
    Resume,
    /// active or paused → finished
    Finish,
    /// planned, active or paused → discarded
    Discard,
}

impl Action {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Finish => "finish",
            Action::Discard => "discard",
        }
    }
}

/// A step that is not allowed from the current state, with the reason for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a workout that is {from}: {reason}", action = action.as_str(), from = from.as_str())]
pub struct TransitionError {
    /// The current state.
    pub from: Status,
    /// The refused step.
    pub action: Action,
    /// Why.
    pub reason: &'static str,
}

/// The state after `action` from `from`.
pub fn transition(from: Status, action: Action) -> Result<Status, TransitionError> {
    use Action::*;
    use Status::*;
    let refuse = |reason| {
        Err(TransitionError {
            from,
            action,
            reason,
        })
    };
    match (from, action) {
        (Planned, Start) => Ok(Active),
        (Active, Pause) => Ok(Paused),
        (Paused, Resume) => Ok(Active),
        (Active | Paused, Finish) => Ok(Finished),
        (Planned | Active | Paused, Discard) => Ok(Discarded),
        (Finished | Discarded, _) => refuse("it is over; create a new workout"),
        (Active | Paused, Start) => refuse("it has already started"),
        (Planned, Pause | Resume | Finish) => refuse("it has not started yet"),
        (Paused, Pause) => refuse("it is already paused"),
        (Active, Resume) => refuse("it is not paused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Planned),
            Just(Status::Active),
            Just(Status::Paused),
            Just(Status::Finished),
            Just(Status::Discarded)
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Start),
            Just(Action::Pause),
            Just(Action::Resume),
            Just(Action::Finish),
            Just(Action::Discard)
        ]
    }

    #[test]
    fn the_usual_life_of_a_workout_is_allowed() {
        let mut status = Status::Planned;
        for action in [
            Action::Start,
            Action::Pause,
            Action::Resume,
            Action::Pause,
            Action::Finish,
        ] {
            status = transition(status, action).expect("allowed");
        }
        assert_eq!(status, Status::Finished);
    }

    #[test]
    fn refusals_say_why() {
        let error = transition(Status::Finished, Action::Pause).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "cannot pause a workout that is finished: it is over; create a new workout"
        );
    }

    proptest! {
        #[test]
        fn finished_and_discarded_are_final(from in prop_oneof![Just(Status::Finished), Just(Status::Discarded)], action in action()) {
            prop_assert!(transition(from, action).is_err());
        }

        #[test]
        fn any_sequence_of_actions_stays_in_a_reachable_state(actions in proptest::collection::vec(action(), 0..30), start in status()) {
            let mut current = start;
            for action in actions {
                if let Ok(next) = transition(current, action) {
                    // Nothing leads back to planned, and only finish leads to finished.
                    prop_assert_ne!(next, Status::Planned);
                    if next == Status::Finished {
                        prop_assert_eq!(action, Action::Finish);
                    }
                    current = next;
                }
            }
        }
    }
}
