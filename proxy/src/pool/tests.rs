//! The pool's rules, each on its own.

use super::*;

fn key(user: &str) -> Rc<PoolKey> {
    Rc::new(PoolKey {
        user: user.as_bytes().to_vec(),
        account_host: None,
        capabilities: Capabilities::CLIENT_PROTOCOL_41,
        collation: 45,
    })
}

fn state(schema: &str) -> Rc<SessionState> {
    Rc::new(SessionState {
        schema: Some(schema.to_string()),
        ..SessionState::default()
    })
}

fn pool(limit: usize, idle_timeout: Duration, max_waiters: usize) -> Rc<BackendPool<u32>> {
    Rc::new(BackendPool::new(limit, idle_timeout, max_waiters))
}

/// A place to open a connection in (else the test fails).
#[track_caller]
fn place(pool: &Rc<BackendPool<u32>>, key: &Rc<PoolKey>, session: u32) -> Place<u32> {
    match pool.try_borrow(key, &state("a"), session) {
        Some(Borrowed::Open(place)) => place,
        Some(Borrowed::Conn(_)) => panic!("an idle connection, not a place"),
        None => panic!("nothing"),
    }
}

/// An idle connection lent (else the test fails).
#[track_caller]
fn idle(
    pool: &Rc<BackendPool<u32>>,
    key: &Rc<PoolKey>,
    state: &SessionState,
    session: u32,
) -> Lent<u32> {
    match pool.try_borrow(key, state, session) {
        Some(Borrowed::Conn(found)) => found.conn,
        Some(Borrowed::Open(_)) => panic!("a place, not an idle connection"),
        None => panic!("nothing"),
    }
}

#[test]
fn a_bound_of_zero_is_none_of_torpors_own() {
    let pool = pool(0, Duration::from_secs(60), 8);
    let places: Vec<_> = (0..1000).map(|_| place(&pool, &key("app"), 1)).collect();
    assert_eq!(pool.open(), 1000);
    drop(places);
    assert_eq!(pool.open(), 0);
}

#[test]
fn prefers_a_connection_already_in_the_sessions_state() {
    let pool = pool(4, Duration::from_secs(60), 8);
    let first = place(&pool, &key("app"), 0);
    let second = place(&pool, &key("app"), 0);
    first.fill(1).give_back(key("app"), state("a"), 0);
    second.fill(2).give_back(key("app"), state("b"), 0);
    let found = idle(&pool, &key("app"), &state("a"), 0);
    assert_eq!(*found, 1);
    assert_eq!(pool.open(), 2);
    assert!(
        pool.try_borrow(&key("other"), &state("a"), 0).is_some(),
        "below the bound another user gets a new place"
    );
}

#[test]
fn a_session_gets_back_the_connection_it_used_last_if_no_one_took_it() {
    let pool = pool(4, Duration::from_secs(60), 8);
    let first = place(&pool, &key("app"), 0);
    let second = place(&pool, &key("app"), 0);
    first.fill(1).give_back(key("app"), state("a"), 5);
    second.fill(2).give_back(key("app"), state("a"), 6);
    let take = |session| idle(&pool, &key("app"), &state("a"), session);
    // Session 5's own, though connection 2 came back later.
    let own = take(5);
    assert_eq!(*own, 1);
    own.give_back(key("app"), state("a"), 5);
    // Session 7 has none of its own and there is room: a new place.
    let _seventh = place(&pool, &key("app"), 7);
    // At the bound (4), 8 takes the longest idle of another's (2),
    // so that 5 still finds its own.
    let _fourth = place(&pool, &key("app"), 0);
    let eighth = take(8);
    assert_eq!(*eighth, 2);
    let own = take(5);
    assert_eq!(*own, 1);
    // A session that ended leaves its connection to anyone.
    own.give_back(key("app"), state("a"), 5);
    pool.disown(5);
    assert_eq!(*take(9), 1);
}

#[test]
fn the_bound_holds_and_other_keys_make_room() {
    let pool = pool(1, Duration::from_secs(60), 8);
    let only = place(&pool, &key("app"), 0);
    assert!(
        pool.try_borrow(&key("app"), &state("a"), 0).is_none(),
        "at the bound"
    );
    only.fill(1).give_back(key("app"), state("a"), 0);
    // Another user: the idle connection of the first is closed for it.
    let other = place(&pool, &key("other"), 0);
    assert_eq!(pool.open(), 1);
    assert_eq!(pool.idle(), 0);
    drop(other);
    assert_eq!(pool.open(), 0);
}

#[test]
fn idle_connections_expire() {
    let pool = pool(2, Duration::from_millis(0), 8);
    place(&pool, &key("app"), 0)
        .fill(1)
        .give_back(key("app"), state("a"), 0);
    std::thread::sleep(Duration::from_millis(2));
    pool.expire();
    assert_eq!((pool.open(), pool.idle()), (0, 0));
}

#[test]
fn what_is_lent_frees_its_place_however_it_is_dropped() {
    let pool = pool(2, Duration::from_secs(60), 8);
    // Closed (an error): the place stays with the borrower, to open
    // another connection in, until it is dropped.
    let lent = place(&pool, &key("app"), 0).fill(1);
    let place = lent.close();
    assert_eq!(pool.open(), 1);
    drop(place);
    assert_eq!(pool.open(), 0);
    // A session that panics while it holds a connection (the worker
    // catches the panic): unwinding drops it, and its place is free.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _held = super::tests::place(&pool, &key("app"), 0).fill(2);
        panic!("a bug in the session");
    }));
    assert!(unwound.is_err());
    assert_eq!(pool.open(), 0, "no place is counted lent forever");
    // Given back, it is idle, not lent.
    super::tests::place(&pool, &key("app"), 0)
        .fill(3)
        .give_back(key("app"), state("a"), 0);
    assert_eq!((pool.open(), pool.idle()), (1, 1));
}

#[test]
fn waiters_get_returned_connections_first_come_first_served() {
    let mut runtime = runtime();
    runtime.block_on(async {
        let pool = pool(1, Duration::from_secs(60), 1);
        let only = place(&pool, &key("app"), 0);
        let waiting = waiter(&pool, 0);
        crate::timer::sleep(Duration::from_millis(5)).await;
        // The queue holds one: a second waiter is refused at once.
        let refused = pool
            .borrow(&key("app"), &state("a"), 0, Duration::from_secs(5))
            .await;
        assert!(matches!(refused, Err(PoolError::QueueFull)));
        only.fill(7).give_back(key("app"), state("a"), 0);
        assert_eq!(waiting.await, Some(7), "the waiter gets it");
        // The waiter dropped it: closed, its place free.
        assert_eq!(pool.open(), 0);
        let _again = place(&pool, &key("app"), 0);
        let timed_out = pool
            .borrow(&key("app"), &state("a"), 0, Duration::from_millis(10))
            .await;
        assert!(matches!(timed_out, Err(PoolError::Timeout)));
        // Only `borrow` counts (try_borrow also serves the pool's own
        // handoffs).
        assert_eq!(
            pool.take_stats(),
            PoolStats {
                waited: 1,
                timeouts: 1,
                queue_full: 1,
                ..PoolStats::default()
            }
        );
        assert_eq!(pool.take_stats(), PoolStats::default(), "taken");
    });
}

#[test]
fn a_wait_given_up_after_its_handoff_landed_gives_it_back() {
    let mut runtime = runtime();
    runtime.block_on(async {
        let pool = pool(1, Duration::from_secs(60), 4);
        let only = place(&pool, &key("app"), 0);
        let (app, a) = (key("app"), state("a"));
        let mut wait = Box::pin(pool.borrow(&app, &a, 0, Duration::from_secs(5)));
        // Polled once: it is queued.
        let polled = futures_util::poll!(wait.as_mut());
        assert!(polled.is_pending());
        // The handoff lands, then the waiting future is dropped (a
        // cancelled select) before it ran again.
        only.fill(9).give_back(key("app"), state("a"), 0);
        drop(wait);
        assert_eq!(
            (pool.open(), pool.idle()),
            (1, 1),
            "back in the pool, not lost with the waiter"
        );
    });
}

/// A runtime for the tests that wait (the pool's queue).
fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("runtime")
}

/// A waiter for a connection of `key("app")` as session `session`: what
/// it got, once it got it.
fn waiter(pool: &Rc<BackendPool<u32>>, session: u32) -> monoio::task::JoinHandle<Option<u32>> {
    let pool = Rc::clone(pool);
    monoio::spawn(async move {
        match pool
            .borrow(&key("app"), &state("a"), session, Duration::from_secs(5))
            .await
        {
            Ok(Borrowed::Conn(pooled)) => Some(*pooled.conn),
            _ => None,
        }
    })
}

/// A connection opened in a new place and kept in `keep` by `session`.
fn kept_in(pool: &Rc<BackendPool<u32>>, keep: &Rc<Keep<u32>>, conn: u32, session: u32) {
    place(pool, &key("app"), session).fill(conn).keep_at(
        keep,
        key("app"),
        state("a"),
        session,
        Instant::now(),
    );
}

#[test]
fn a_kept_connection_counts_idle_and_comes_back_to_its_session() {
    let pool = pool(2, Duration::from_secs(60), 8);
    let keep = Rc::new(Keep::default());
    kept_in(&pool, &keep, 1, 5);
    assert_eq!((pool.open(), pool.idle()), (1, 1));
    let kept = keep.take().expect("kept");
    assert_eq!((*kept.conn, kept.session), (1, 5));
    assert_eq!((pool.open(), pool.idle()), (1, 0), "lent again");
    assert!(keep.take().is_none(), "taken once");
    // Below the bound another session opens its own: what one keeps is
    // not taken while there is room (as an idle connection a session
    // used last is not).
    kept.conn
        .keep_at(&keep, key("app"), state("a"), 5, Instant::now());
    let _other = place(&pool, &key("app"), 6);
    assert_eq!(*keep.take().expect("still kept").conn, 1);
}

#[test]
fn a_borrower_at_the_bound_takes_what_a_session_keeps() {
    let pool = pool(1, Duration::from_secs(60), 8);
    let keep = Rc::new(Keep::default());
    kept_in(&pool, &keep, 1, 5);
    assert_eq!(*idle(&pool, &key("app"), &state("a"), 6), 1);
    assert!(keep.take().is_none(), "the pool took it back");
    assert_eq!((pool.open(), pool.idle()), (0, 0), "the borrower closed it");
    // A borrower of another key makes room the same way: the kept
    // connection is closed for it.
    kept_in(&pool, &keep, 2, 5);
    let _other = place(&pool, &key("other"), 6);
    assert!(keep.take().is_none(), "closed for the other key");
    assert_eq!((pool.open(), pool.idle()), (1, 0));
}

#[test]
fn a_session_does_not_keep_while_others_wait() {
    let mut runtime = runtime();
    runtime.block_on(async {
        let pool = pool(1, Duration::from_secs(60), 8);
        let only = place(&pool, &key("app"), 5);
        let waiting = waiter(&pool, 6);
        crate::timer::sleep(Duration::from_millis(5)).await;
        let keep = Rc::new(Keep::default());
        only.fill(3)
            .keep_at(&keep, key("app"), state("a"), 5, Instant::now());
        assert!(keep.take().is_none(), "given to the waiter instead");
        assert_eq!(waiting.await, Some(3));
    });
}

#[test]
fn what_is_kept_expires_drains_and_closes_with_its_keep() {
    let pool = pool(4, Duration::from_millis(0), 8);
    let keep = Rc::new(Keep::default());
    kept_in(&pool, &keep, 1, 5);
    std::thread::sleep(Duration::from_millis(2));
    pool.expire();
    assert_eq!((pool.open(), pool.idle()), (0, 0), "expired");
    assert!(keep.take().is_none());

    let pool = self::pool(4, Duration::from_secs(60), 8);
    kept_in(&pool, &keep, 2, 5);
    assert_eq!(pool.drain().len(), 1, "a shutdown or a suspend takes it");
    assert_eq!((pool.open(), pool.idle()), (0, 0));

    // A session that ends any other way (its task dropped): the
    // connection closes and its place is freed.
    kept_in(&pool, &keep, 3, 5);
    assert_eq!(pool.open(), 1);
    drop(keep);
    assert_eq!((pool.open(), pool.idle()), (0, 0));
    // The pool's list of keeps forgets it at the next look.
    pool.expire();
    assert!(pool.keeps.borrow().is_empty());
}

/// A borrow of `key("app")` for session 2 that may wait `timeout`: the
/// connection it got (`Some(Some(n))`), a place to open one in
/// (`Some(None)`), or nothing.
async fn borrow_for(pool: &Rc<BackendPool<u32>>, timeout: Duration) -> Option<Option<u32>> {
    match pool.borrow(&key("app"), &state("a"), 2, timeout).await {
        // What is lent counts open while it lives: kept, so that the
        // caller sees it counted.
        Ok(Borrowed::Conn(pooled)) => {
            let conn = *pooled.conn;
            std::mem::forget(pooled.conn);
            Some(Some(conn))
        }
        Ok(Borrowed::Open(place)) => {
            std::mem::forget(place);
            Some(None)
        }
        Err(_) => None,
    }
}

#[test]
fn at_the_target_a_borrower_waits_for_a_connection_to_come_back() {
    let mut runtime = runtime();
    runtime.block_on(async {
        let pool = pool(0, Duration::from_secs(60), 8);
        pool.set_target(1, Duration::from_secs(5));
        let only = place(&pool, &key("app"), 1);
        assert!(
            pool.try_borrow(&key("app"), &state("a"), 2).is_none(),
            "no bound, but the target is reached"
        );
        let pool2 = Rc::clone(&pool);
        let waiting =
            monoio::spawn(async move { borrow_for(&pool2, Duration::from_secs(10)).await });
        crate::timer::sleep(Duration::from_millis(5)).await;
        only.fill(7).give_back(key("app"), state("a"), 1);
        assert_eq!(waiting.await, Some(Some(7)), "the one that came back");
        assert_eq!(pool.open(), 1, "none opened over the target");
    });
}

#[test]
fn a_borrower_that_waited_the_reserve_time_opens_one_more_below_the_bound() {
    let mut runtime = runtime();
    runtime.block_on(async {
        let pool = pool(2, Duration::from_secs(60), 8);
        pool.set_target(1, Duration::from_millis(20));
        let _held = place(&pool, &key("app"), 1);
        assert_eq!(
            borrow_for(&pool, Duration::from_secs(5)).await,
            Some(None),
            "a place over the target, after the reserve time"
        );
        assert_eq!(pool.open(), 2);
        assert_eq!(
            pool.take_stats(),
            PoolStats {
                reserved: 1,
                ..PoolStats::default()
            }
        );
        // A pool wait shorter than the reserve time ends in a place as
        // well: below the bound, nothing is refused at the target.
        pool.set_target(1, Duration::from_secs(60));
        pool.set_limits(3, Duration::from_secs(60), 8);
        assert_eq!(
            borrow_for(&pool, Duration::from_millis(30)).await,
            Some(None)
        );
        assert_eq!(pool.open(), 3);
        // At the bound the reserve time changes nothing: the wait times
        // out as it would without a target.
        assert_eq!(borrow_for(&pool, Duration::from_millis(100)).await, None);
        assert_eq!(
            pool.take_stats(),
            PoolStats {
                reserved: 1,
                timeouts: 1,
                ..PoolStats::default()
            }
        );
    });
}

#[test]
fn connections_over_the_target_close_once_idle_a_while() {
    let pool = pool(0, Duration::from_secs(60), 8);
    let (a, b, c) = (
        place(&pool, &key("app"), 1),
        place(&pool, &key("app"), 2),
        place(&pool, &key("app"), 3),
    );
    pool.set_target(1, Duration::from_millis(20));
    let long_ago = Instant::now() - SURPLUS_IDLE * 2;
    a.fill(1).give_back_at(key("app"), state("a"), 1, long_ago);
    b.fill(2).give_back_at(key("app"), state("a"), 2, long_ago);
    c.fill(3).give_back(key("app"), state("a"), 3);
    pool.expire();
    assert_eq!(
        (pool.open(), pool.idle()),
        (1, 1),
        "two over the target, both idle long enough: closed"
    );
    // The one left is the one given back just now.
    assert_eq!(*idle(&pool, &key("app"), &state("a"), 3), 3);
}
