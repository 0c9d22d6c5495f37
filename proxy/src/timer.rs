//! Sleeps and time limits for every monoio runtime in Torpor, kept by one
//! helper thread instead of monoio's time driver.
//!
//! Why not monoio's timers: its time driver works at every park of the
//! runtime, due or not. It looks up the wheel's next expiry, reads the
//! clock before and after the wait and walks the wheel again: ~425
//! instructions a park, two parks a statement for a lone client, ~850 of
//! the ~9 600 a point select cost a worker (`bench/callgrind.sh`). Yet a
//! worker's timers fire once a second or so (its tick, the session watch)
//! or guard rare waits (a login's deadline, a borrow queued on a full
//! pool). Without the time driver, a worker parks on its I/O alone and
//! the clock is read only where Torpor asks for it.
//!
//! Why not the `futures-timer` crate, whose helper thread does the same
//! job: it wakes that thread (a futex wake and a context switch) each
//! time a timer is made and again each time one is dropped, which a login
//! would pay for each of its deadlines. Here a new timer wakes the helper
//! only when it falls due before everything the helper already waits for
//! (the workers' ticks keep one due within a second), and a dropped timer
//! never does.
//!
//! The helper is one process-wide thread, started by the first timer. It
//! shares nothing a caller can see: timers are independent, and its lock
//! is held for a few map operations, never across an await.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A limit ran out before the future it guarded was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// Waits for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::until(Instant::now().checked_add(duration))
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::until(Some(deadline))
}

/// Runs `future` for at most `limit`: its output, or [`Elapsed`].
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, Elapsed> {
    within(sleep(limit), future).await
}

/// Runs `future` until `deadline` at most: its output, or [`Elapsed`].
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    within(sleep_until(deadline), future).await
}

/// `future`'s output, unless `limit` ends first. The future is polled
/// first, so one that is ready wins even when the time is up.
async fn within<F: Future>(mut limit: Sleep, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut limit).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// A wait until an instant ([`sleep`], [`sleep_until`]). It is entered
/// with the helper when first polled before its time, and leaves it when
/// it ends or is dropped.
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    /// When it ends; `None` for never (a duration past what `Instant`
    /// can hold).
    deadline: Option<Instant>,
    /// Where it stands with the helper.
    entry: Entry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Not entered yet.
    Unentered,
    /// Entered under this id; the helper wakes it when due.
    Waiting(u64),
    /// Ended.
    Done,
}

impl Sleep {
    fn until(deadline: Option<Instant>) -> Sleep {
        Sleep {
            deadline,
            entry: Entry::Unentered,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.entry {
            Entry::Done => Poll::Ready(()),
            Entry::Unentered => {
                let Some(deadline) = this.deadline else {
                    // Never due: nothing to enter; nothing will wake it.
                    return Poll::Pending;
                };
                if Instant::now() >= deadline {
                    this.entry = Entry::Done;
                    return Poll::Ready(());
                }
                this.entry = Entry::Waiting(helper().enter(deadline, cx.waker()));
                Poll::Pending
            }
            Entry::Waiting(id) => {
                if helper().poll_entered(id, cx.waker()) {
                    this.entry = Entry::Done;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Entry::Waiting(id) = self.entry {
            helper().leave(id);
        }
    }
}

/// The helper thread's side: the timers that wait, and the condition it
/// sleeps on.
struct Helper {
    book: Mutex<Book>,
    /// Signalled when a timer falls due before the helper's wake-up.
    sooner: Condvar,
}

/// What the helper keeps, under its lock.
#[derive(Default)]
struct Book {
    /// Deadlines, soonest first. A dropped timer's deadline stays until
    /// it comes up (or [`Book::compact`] clears it): removing it from the
    /// middle of a heap would cost more than skipping it.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Each entered timer that has not ended: its waker, or, once due and
    /// until its future sees it, nothing. Hashed with foldhash: the ids
    /// are Torpor's own count, and SipHash cost a login ~600
    /// instructions here (callgrind).
    entered: HashMap<u64, Option<Waker>, foldhash::fast::RandomState>,
    /// The next timer's id.
    next_id: u64,
}

impl Book {
    /// Drops the deadlines of timers that left once they outnumber the
    /// live ones, so that many short-lived long timers (login deadlines
    /// under a burst of logins) cannot pile up.
    fn compact(&mut self) {
        if self.due.len() > 64 && self.due.len() > 4 * self.entered.len() {
            let entered = &self.entered;
            self.due.retain(|Reverse((_, id))| entered.contains_key(id));
        }
    }
}

/// The helper, started on first use.
fn helper() -> &'static Helper {
    static HELPER: OnceLock<Helper> = OnceLock::new();
    HELPER.get_or_init(|| {
        std::thread::Builder::new()
            .name("torpor-timers".into())
            .spawn(|| helper().run())
            // Only when the process has no thread left to give: nothing
            // that waits for time could work then.
            .expect("the timer thread starts");
        Helper {
            book: Mutex::new(Book::default()),
            sooner: Condvar::new(),
        }
    })
}

impl Helper {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic under the lock leaves the book whole (every change is
        // one map or heap operation), so a poisoned lock is still good.
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Enters a timer due at `deadline`; returns its id.
    fn enter(&self, deadline: Instant, waker: &Waker) -> u64 {
        let mut book = self.lock();
        let id = book.next_id;
        book.next_id += 1;
        // The helper sleeps until the soonest deadline in the heap (a
        // dropped timer's too), and looks at the heap again whenever it
        // wakes: only a deadline sooner than all of them needs a signal.
        let sooner = book
            .due
            .peek()
            .is_none_or(|Reverse((soonest, _))| deadline < *soonest);
        book.due.push(Reverse((deadline, id)));
        book.entered.insert(id, Some(waker.clone()));
        drop(book);
        if sooner {
            self.sooner.notify_one();
        }
        id
    }

    /// Whether timer `id` is due; if not, `waker` is the one to wake.
    fn poll_entered(&self, id: u64, waker: &Waker) -> bool {
        let mut book = self.lock();
        match book.entered.get_mut(&id) {
            Some(Some(waiting)) => {
                if !waiting.will_wake(waker) {
                    waiting.clone_from(waker);
                }
                false
            }
            // Due (or, never so far, gone): it ends.
            Some(None) | None => {
                book.entered.remove(&id);
                true
            }
        }
    }

    /// Timer `id` ended before it was seen due (dropped).
    fn leave(&self, id: u64) {
        let mut book = self.lock();
        book.entered.remove(&id);
        book.compact();
    }

    /// The helper thread: wakes every timer that falls due, then sleeps
    /// until the next one or until a sooner one is entered.
    fn run(&self) {
        let mut due_now = Vec::new();
        let mut book = self.lock();
        loop {
            let now = Instant::now();
            while let Some(&Reverse((deadline, id))) = book.due.peek() {
                if deadline > now {
                    break;
                }
                book.due.pop();
                if let Some(waiting) = book.entered.get_mut(&id) {
                    due_now.extend(waiting.take());
                }
            }
            if !due_now.is_empty() {
                // Woken outside the lock: a waker may run its task's
                // thread code (monoio sends it to the owning worker).
                drop(book);
                due_now.drain(..).for_each(Waker::wake);
                book = self.lock();
                continue;
            }
            book = match book.due.peek().map(|Reverse((deadline, _))| *deadline) {
                Some(wakes) => {
                    let left = wakes.saturating_duration_since(now);
                    self.sooner
                        .wait_timeout(book, left)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => self
                    .sooner
                    .wait(book)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A runtime with no time driver, as the workers run.
    fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime")
    }

    #[test]
    fn sleeps_end_in_deadline_order_and_not_before_their_time() {
        runtime().block_on(async {
            let order = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let tasks: Vec<_> = [30u64, 10, 20]
                .into_iter()
                .map(|ms| {
                    let order = Rc::clone(&order);
                    monoio::spawn(async move {
                        sleep(Duration::from_millis(ms)).await;
                        assert!(start.elapsed() >= Duration::from_millis(ms));
                        order.borrow_mut().push(ms);
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            assert_eq!(*order.borrow(), vec![10, 20, 30]);
        });
    }

    #[test]
    fn a_timeout_ends_a_future_that_never_finishes_and_spares_one_that_does() {
        runtime().block_on(async {
            let never = std::future::pending::<()>();
            assert_eq!(timeout(Duration::from_millis(5), never).await, Err(Elapsed));
            let quick = async { 7 };
            assert_eq!(timeout(Duration::from_secs(60), quick).await, Ok(7));
            let past = Instant::now() - Duration::from_millis(1);
            assert_eq!(
                timeout_at(past, async { 8 }).await,
                Ok(8),
                "ready wins over due"
            );
        });
    }

    #[test]
    fn a_sooner_timer_wakes_the_helper_from_a_longer_sleep() {
        runtime().block_on(async {
            // The helper now sleeps until this one is due, in a minute.
            let mut long = pin!(sleep(Duration::from_secs(60)));
            assert!(futures_poll_once(long.as_mut()).await.is_pending());
            let start = Instant::now();
            sleep(Duration::from_millis(10)).await;
            assert!(start.elapsed() < Duration::from_secs(30));
        });
    }

    #[test]
    fn dropped_timers_leave_the_book_and_their_deadlines_are_compacted() {
        runtime().block_on(async {
            for _ in 0..1000 {
                let mut pending = pin!(sleep(Duration::from_secs(3600)));
                assert!(futures_poll_once(pending.as_mut()).await.is_pending());
            }
            let book = helper().lock();
            // Other tests' timers may be in the book too, but none of
            // these thousand is.
            assert!(book.due.len() < 1000, "{} deadlines kept", book.due.len());
        });
    }

    #[test]
    fn a_duration_past_what_an_instant_holds_never_ends() {
        runtime().block_on(async {
            let result = timeout(Duration::from_millis(5), sleep(Duration::MAX)).await;
            assert_eq!(result, Err(Elapsed));
        });
    }

    /// Polls `future` once, with the task's waker.
    async fn futures_poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        let mut future = Some(future);
        std::future::poll_fn(|cx| {
            let future = future.take().expect("polled once");
            Poll::Ready(future.poll(cx))
        })
        .await
    }
}
