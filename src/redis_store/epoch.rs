//! The generation marker that tells a kept revocation set from a lost one.
//!
//! `{prefix}epoch` holds an opaque id. On a cluster, every hash slot also holds a copy,
//! `{prefix}epoch:{n}` with `n` chosen so the copy lands in that slot: a lookup reads the copy of
//! each slot it touches in the same pipeline as its facts, so an emptied node is noticed on the
//! first lookup after it, at no extra round trip (on a single node the copy is `{prefix}epoch`).
//!
//! A replica learns the id from `{prefix}epoch` (its health loop reads it every 500 ms) and from
//! then on expects it: a marker that is gone or different means Redis lost or replaced its data,
//! and every lookup fails (and `on_error` decides) until an operator confirms the set with
//! `mesh-authz confirm-epoch`, which writes a new id starting with [`CONFIRMED_PREFIX`].
//! When no marker exists at all (a new deployment) the first replica creates it; a replica that
//! starts after Redis was emptied cannot tell the two apart, but every replica that was running
//! can, and stays failed closed until the confirmation.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::keys::key_slot;

/// Ids written by `mesh-authz confirm-epoch` start with this; only such an id ends a loss.
pub const CONFIRMED_PREFIX: &str = "confirmed:";

/// The name of the copy of the marker in each hash slot (16384 names), for one key prefix.
pub(super) struct SlotMarkers {
    names: Vec<String>,
}

impl SlotMarkers {
    /// Finds, for every slot, a marker name in it. With a `{hash tag}` in the prefix every key
    /// shares one slot, and `{prefix}epoch` is that slot's marker.
    pub(super) fn new(prefix: &str) -> SlotMarkers {
        let main = format!("{prefix}epoch");
        if super::keys::hash_tag(main.as_bytes()).is_some() {
            return SlotMarkers {
                names: vec![main; 16384],
            };
        }
        let mut names: Vec<Option<String>> = vec![None; 16384];
        let mut missing = names.len();
        let mut n: u64 = 0;
        // Coupon collection: about 170k tries; the cap only guards against a broken hash.
        while missing > 0 && n < 20_000_000 {
            let name = format!("{prefix}epoch:{n}");
            if let Some(slot) = names.get_mut(usize::from(key_slot(name.as_bytes())))
                && slot.is_none()
            {
                *slot = Some(name);
                missing -= 1;
            }
            n += 1;
        }
        SlotMarkers {
            names: names
                .into_iter()
                .map(|n| n.unwrap_or_else(|| main.clone()))
                .collect(),
        }
    }

    /// The marker name in `slot`.
    pub(super) fn for_slot(&self, slot: u16) -> &str {
        self.names.get(usize::from(slot)).map_or("", String::as_str)
    }

    /// Every name, once.
    pub(super) fn all(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.names
            .iter()
            .map(String::as_str)
            .filter(move |n| seen.insert(*n))
    }
}

/// Lazily built slot markers (only a cluster needs them).
pub(super) type LazyMarkers = OnceLock<SlotMarkers>;

#[derive(Default)]
struct State {
    known: Option<String>,
    lost: Option<String>,
}

/// What a replica knows of the marker.
#[derive(Default)]
pub(super) struct EpochGuard {
    state: Mutex<State>,
    lost: AtomicBool,
}

/// The outcome of reading `{prefix}epoch`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Observed {
    /// As expected.
    Steady,
    /// No marker yet and none known: a new deployment, to initialise.
    Uninitialised,
    /// The marker was lost or changed: failing closed from now on (the reason).
    Lost(String),
    /// An operator confirmed a new set: serving again.
    Confirmed,
}

impl EpochGuard {
    /// Whether the set is considered lost.
    #[cfg(test)]
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Why the set is considered lost.
    pub(super) fn reason(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.lost.clone())
    }

    /// The id known, if any.
    pub(super) fn known(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.known.clone())
    }

    fn mark_lost(&self, state: &mut State, why: String) -> String {
        if state.lost.is_none() {
            tracing::error!(
                reason = %why,
                "revocation set in Redis lost: failing closed until an operator runs \
                 `mesh-authz confirm-epoch`"
            );
            state.lost = Some(why.clone());
        }
        self.lost.store(true, Ordering::SeqCst);
        state.lost.clone().unwrap_or(why)
    }

    /// Checks a copy read beside lookup facts; `Err` (the reason) when the set is lost.
    pub(super) fn check(&self, seen: Option<&str>) -> Result<(), String> {
        let Ok(mut state) = self.state.lock() else {
            return Err("epoch state poisoned".into());
        };
        if let Some(why) = &state.lost {
            return Err(why.clone());
        }
        match (&state.known, seen) {
            (None, _) => Ok(()),
            (Some(k), Some(v)) if k == v => Ok(()),
            (Some(_), None) => Err(self.mark_lost(
                &mut state,
                "epoch marker missing: Redis lost its data (restarted without persistence, \
                 flushed, or failed over to an empty node)"
                    .into(),
            )),
            (Some(_), Some(_)) => Err(self.mark_lost(
                &mut state,
                "epoch marker changed: Redis was replaced or re-initialised".into(),
            )),
        }
    }

    /// Applies a read of `{prefix}epoch`.
    pub(super) fn observe(&self, seen: Option<&str>) -> Observed {
        let Ok(mut state) = self.state.lock() else {
            return Observed::Lost("epoch state poisoned".into());
        };
        match (state.known.clone(), seen) {
            (None, None) => Observed::Uninitialised,
            (None, Some(v)) => {
                state.known = Some(v.to_string());
                Observed::Steady
            }
            (Some(k), Some(v)) if k == v => match &state.lost {
                Some(why) => Observed::Lost(why.clone()),
                None => Observed::Steady,
            },
            (Some(_), Some(v)) if v.starts_with(CONFIRMED_PREFIX) && state.lost.is_some() => {
                state.known = Some(v.to_string());
                state.lost = None;
                self.lost.store(false, Ordering::SeqCst);
                tracing::warn!("revocation set confirmed by an operator; serving again");
                Observed::Confirmed
            }
            (Some(_), None) => Observed::Lost(
                self.mark_lost(
                    &mut state,
                    "epoch marker missing: Redis lost its data (restarted without persistence, \
                 flushed, or failed over to an empty node)"
                        .into(),
                ),
            ),
            (Some(_), Some(_)) => Observed::Lost(self.mark_lost(
                &mut state,
                "epoch marker changed: Redis was replaced or re-initialised".into(),
            )),
        }
    }
}

/// A new random id (`confirmed` for an operator's confirmation).
pub(super) fn new_id(confirmed: bool) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    // On failure the id is still unique enough with the time; it only has to differ.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let now = mesh_authz_core::clock::unix_now();
    if confirmed {
        format!("{CONFIRMED_PREFIX}{now}-{hex}")
    } else {
        format!("{now}-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_marker_in_it() {
        let m = SlotMarkers::new("mesh-authz:");
        for slot in [0u16, 1, 777, 16383] {
            assert_eq!(key_slot(m.for_slot(slot).as_bytes()), slot);
        }
        assert_eq!(m.all().count(), 16384);
        let tagged = SlotMarkers::new("{app}:");
        assert_eq!(tagged.all().count(), 1);
        assert_eq!(
            key_slot(tagged.for_slot(5).as_bytes()),
            key_slot(b"{app}:jti:x")
        );
    }

    #[test]
    fn lost_until_confirmed() {
        let g = EpochGuard::default();
        assert_eq!(g.check(None), Ok(()), "nothing known yet");
        assert_eq!(g.observe(None), Observed::Uninitialised);
        assert_eq!(g.observe(Some("a")), Observed::Steady);
        assert_eq!(g.check(Some("a")), Ok(()));
        assert!(g.check(None).is_err());
        assert!(g.is_lost());
        assert!(g.check(Some("a")).is_err(), "stays lost");
        assert!(matches!(g.observe(Some("b")), Observed::Lost(_)));
        assert!(
            matches!(g.observe(Some("a")), Observed::Lost(_)),
            "the old id back does not end a loss"
        );
        assert_eq!(g.observe(Some("confirmed:x")), Observed::Confirmed);
        assert!(!g.is_lost());
        assert_eq!(g.check(Some("confirmed:x")), Ok(()));
        assert!(g.check(Some("other")).is_err(), "a changed id is a loss");
    }
}
