//! Unit tests of the state word's fields and rules (`limit.rs`).

use super::*;

#[test]
fn fields_round_trip() {
    assert_eq!(
        waiters(ASYNC_WAITERS),
        0,
        "the futures' bit is not a waiter"
    );
    assert!(has_waiters(ASYNC_WAITERS) && !may_barge(ASYNC_WAITERS | HANDOFF));
    let w = with_free(0, MAX_LIVE as i64);
    assert_eq!((idle(w), free(w), waiters(w)), (0, MAX_LIVE as i64, 0));
    let w = with_free(w + 3 * IDLE_ONE + 2 * WAITER_ONE, -(MAX_LIVE as i64));
    assert_eq!((idle(w), free(w), waiters(w)), (3, -(MAX_LIVE as i64), 2));
    assert_eq!(w & (WOKEN | HANDOFF | CLOSED), 0);
    let w = (w | CLOSED | WOKEN | HANDOFF) + WAITER_ONE * (MAX_WAITERS - 2);
    assert_eq!(waiters(w), MAX_WAITERS);
    assert_eq!(free(w), -(MAX_LIVE as i64));
    let w = w + 1023 * BARGE_ONE;
    assert_eq!((barges(w), waiters(w), idle(w)), (1023, MAX_WAITERS, 3));
    assert_eq!(free(w), -(MAX_LIVE as i64));
    assert_eq!(w & (WOKEN | HANDOFF | CLOSED), WOKEN | HANDOFF | CLOSED);
}

#[test]
fn patience_of_timeouts_and_deadlines() {
    assert!(matches!(Patience::timeout(Duration::ZERO), Patience::Never));
    assert!(matches!(
        Patience::timeout(Duration::MAX),
        Patience::Forever
    ));
    let past = Instant::now();
    assert!(matches!(Patience::deadline(past), Patience::Never));
    match Patience::timeout(Duration::from_secs(1)) {
        Patience::Until { deadline, since } => {
            assert_eq!(deadline - since, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn barges_past_a_woken_waiter_are_limited() {
    let mut w = with_free(WAITER_ONE, 2);
    assert!(may_barge(w) && barged(w) == w, "no wake in flight: free");
    w |= WOKEN;
    for n in 0..BARGE_LIMIT {
        assert!(may_barge(w), "barge {n}");
        w = barged(w);
    }
    assert_eq!(barges(w), BARGE_LIMIT);
    assert!(!may_barge(w), "the woken waiter's turn");
    assert!(may_barge(w - WAITER_ONE), "nobody registered: free");
    let w = looked(w);
    assert!(may_barge(w) && barges(w) == 0 && w & WOKEN == 0);
    assert!(!may_barge(w | HANDOFF), "a starving waiter waits");
}

#[test]
fn idle_over_a_shrunk_cap_is_not_available() {
    let w = with_free(2 * IDLE_ONE, -2);
    assert!(take(w).is_none());
    let w = with_free(3 * IDLE_ONE, -2);
    assert_eq!(take(w).map(|t| t.0), Some(Token::Idle));
}

#[test]
fn settle_wakes_once() {
    let w = with_free(WAITER_ONE, 1);
    let (w, wake) = settle(w);
    assert!(wake && w & WOKEN != 0);
    assert!(!settle(w).1, "a wake is in flight already");
}
