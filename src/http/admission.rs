//! Which connections the endpoint keeps when it is full.
//!
//! A connection is *pending* from its accept until its first request head is complete (the TLS
//! handshake included), then *served*: busy with a request, or idle between keep-alive
//! requests. A pending connection has proved nothing, and a client that sends half a head and
//! stops holds one for the whole header timeout; if pending connections took the same slots as
//! served ones, a few hundred such sockets would make every new scrape wait for that timeout.
//! So the two are bounded apart:
//!
//! * pending connections up to [`Limits::max_pending`]: at that cap, the one pending longest
//!   is closed to make room, so a new client that sends its head at once always gets in;
//! * served connections up to [`Limits::max_served`]: a request that finds them all taken
//!   takes the slot of the connection idle longest, and waits only while every served
//!   connection is in the middle of a request.
//!
//! Each closing is counted as the rejection `evicted`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::selfmetrics::{Rejection, Rejections};

/// The bounds of [`Admission`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections past their first request head, busy or idle.
    pub max_served: usize,
    /// Connections still in their TLS handshake or first request head.
    pub max_pending: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Busy,
    /// Idle since the given step of the book's clock.
    Idle(u64),
}

struct Entry {
    state: State,
    close: Arc<Notify>,
}

/// Every open connection with its state. Ids come from one counter, so the smallest pending id
/// is the connection accepted first, and idle connections are ordered by a tick of the same
/// counter.
#[derive(Default)]
struct Book {
    clock: u64,
    entries: HashMap<u64, Entry>,
    pending: BTreeMap<u64, ()>,
    /// Tick at which a connection became idle → its id.
    idle: BTreeMap<u64, u64>,
    served: usize,
    /// Where evictions are counted.
    rejections: Rejections,
}

impl Book {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Removes `id` and releases what it held; returns its entry.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        match entry.state {
            State::Pending => {
                self.pending.remove(&id);
            }
            State::Busy => self.served -= 1,
            State::Idle(tick) => {
                self.idle.remove(&tick);
                self.served -= 1;
            }
        }
        Some(entry)
    }

    /// Closes `id` (its task sees the notification) and counts it.
    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.remove(id) {
            entry.close.notify_one();
            self.rejections.count(Rejection::Evicted);
        }
    }

    fn oldest_pending(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    fn oldest_idle(&self) -> Option<u64> {
        self.idle.values().next().copied()
    }
}

/// The book of open connections; shared by the accept loop and every connection task.
pub struct Admission {
    limits: Limits,
    book: Mutex<Book>,
    /// Signalled when a served connection closes or turns idle, for requests waiting for a slot.
    freed: Notify,
}

/// One connection's place in the book; dropping it removes the connection.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    close: Arc<Notify>,
}

impl Admission {
    pub fn new(limits: Limits, rejections: Rejections) -> Arc<Admission> {
        let limits = Limits {
            max_served: limits.max_served.max(1),
            max_pending: limits.max_pending.max(1),
        };
        Arc::new(Admission {
            limits,
            book: Mutex::new(Book {
                rejections,
                ..Book::default()
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters a newly accepted connection as pending, first closing the connection pending
    /// longest if the pending connections are at their cap.
    pub fn admit(self: &Arc<Self>) -> Ticket {
        let close = Arc::new(Notify::new());
        let mut book = self.lock();
        while book.pending.len() >= self.limits.max_pending {
            let Some(oldest) = book.oldest_pending() else { break };
            book.evict(oldest);
        }
        let id = book.tick();
        book.pending.insert(id, ());
        let entry = Entry {
            state: State::Pending,
            close: Arc::clone(&close),
        };
        book.entries.insert(id, entry);
        Ticket {
            admission: Arc::clone(self),
            id,
            close,
        }
    }

    /// Closes the connection pending longest, to free its file descriptor; false if none is.
    pub fn evict_oldest_pending(&self) -> bool {
        let mut book = self.lock();
        match book.oldest_pending() {
            Some(id) => {
                book.evict(id);
                true
            }
            None => false,
        }
    }

    /// Connections (pending, served) in the book.
    pub fn counts(&self) -> (usize, usize) {
        let book = self.lock();
        (book.pending.len(), book.served)
    }
}

impl Ticket {
    /// Completes when this connection is evicted; its task then drops the connection.
    pub async fn closed(&self) {
        self.close.notified().await
    }

    /// True while the connection has not completed its first request head.
    pub fn is_pending(&self) -> bool {
        let book = self.admission.lock();
        book.entries.get(&self.id).is_some_and(|e| e.state == State::Pending)
    }

    /// Marks the connection busy with a request. A pending connection takes a served slot
    /// first: a free one, else the one idle longest, else it waits until one frees.
    pub async fn begin_request(&self) {
        let admission = &self.admission;
        loop {
            let freed = admission.freed.notified();
            tokio::pin!(freed);
            // Registered before the book is read, so that a slot freed in between still wakes us.
            freed.as_mut().enable();
            {
                let mut book = admission.lock();
                let Some(state) = book.entries.get(&self.id).map(|e| e.state) else {
                    // Evicted meanwhile: the task is being closed; nothing to hold.
                    return;
                };
                match state {
                    State::Busy => return,
                    State::Idle(tick) => {
                        book.idle.remove(&tick);
                        set_state(&mut book, self.id, State::Busy);
                        return;
                    }
                    State::Pending => {
                        if book.served >= admission.limits.max_served {
                            if let Some(idle) = book.oldest_idle() {
                                book.evict(idle);
                            }
                        }
                        if book.served < admission.limits.max_served {
                            book.pending.remove(&self.id);
                            book.served += 1;
                            set_state(&mut book, self.id, State::Busy);
                            return;
                        }
                    }
                }
            }
            freed.await;
        }
    }

    /// Marks the connection idle after its response, which makes its slot the first to give
    /// up once it has been idle longest.
    pub fn end_request(&self) {
        let admission = &self.admission;
        let mut book = admission.lock();
        if book.entries.get(&self.id).is_some_and(|e| e.state == State::Busy) {
            let tick = book.tick();
            book.idle.insert(tick, self.id);
            set_state(&mut book, self.id, State::Idle(tick));
            drop(book);
            admission.freed.notify_one();
        }
    }
}

fn set_state(book: &mut Book, id: u64, state: State) {
    if let Some(e) = book.entries.get_mut(&id) {
        e.state = state;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let served = {
            let mut book = self.admission.lock();
            book.remove(self.id).is_some_and(|e| e.state != State::Pending)
        };
        if served {
            self.admission.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admission(max_served: usize, max_pending: usize) -> Arc<Admission> {
        Admission::new(
            Limits {
                max_served,
                max_pending,
            },
            Rejections::default(),
        )
    }

    fn closed_now(t: &Ticket) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(10), t.closed())
                .await
                .is_ok()
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn pending_cap_closes_the_oldest_pending() {
        let a = admission(4, 3);
        let tickets: Vec<Ticket> = (0..3).map(|_| a.admit()).collect();
        assert_eq!(a.counts(), (3, 0));
        let fourth = a.admit();
        assert!(closed_now(&tickets[0]), "oldest pending closed");
        assert!(!closed_now(&tickets[1]));
        assert!(!closed_now(&fourth));
        assert_eq!(a.counts(), (3, 0));
        drop(tickets);
        assert_eq!(a.counts(), (1, 0), "an evicted ticket's drop releases nothing twice");
    }

    #[test]
    fn served_connections_do_not_count_as_pending() {
        let a = admission(2, 2);
        let first = a.admit();
        block_on(first.begin_request());
        assert!(!first.is_pending());
        let _p1 = a.admit();
        let _p2 = a.admit();
        let _p3 = a.admit();
        assert!(
            !closed_now(&first),
            "a busy connection is never evicted for a pending one"
        );
        assert_eq!(a.counts(), (2, 1));
    }

    #[test]
    fn full_served_slots_give_way_from_the_longest_idle() {
        let a = admission(2, 8);
        let (x, y) = (a.admit(), a.admit());
        block_on(x.begin_request());
        block_on(y.begin_request());
        x.end_request();
        y.end_request();
        let z = a.admit();
        block_on(z.begin_request());
        assert!(closed_now(&x), "idle longest");
        assert!(!closed_now(&y));
        assert_eq!(a.counts(), (0, 2));
        // An idle connection's next request keeps its slot.
        block_on(y.begin_request());
        assert!(!closed_now(&y));
    }

    #[test]
    fn a_request_waits_while_every_served_connection_is_busy() {
        let a = admission(1, 8);
        let busy = a.admit();
        block_on(busy.begin_request());
        let next = a.admit();
        block_on(async {
            let wait = tokio::time::timeout(Duration::from_millis(50), next.begin_request()).await;
            assert!(wait.is_err(), "no slot while the only one is busy");
            busy.end_request();
            tokio::time::timeout(Duration::from_secs(1), next.begin_request())
                .await
                .expect("the idle slot is taken over");
        });
        assert!(closed_now(&busy));
        assert!(!next.is_pending());
    }

    #[test]
    fn a_closed_busy_connection_frees_its_slot() {
        let a = admission(1, 8);
        let busy = a.admit();
        block_on(busy.begin_request());
        let next = a.admit();
        block_on(async {
            let waiting = next.begin_request();
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(Duration::from_millis(20), waiting.as_mut())
                .await
                .is_err());
            drop(busy);
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .expect("slot freed by the drop");
        });
        assert_eq!(a.counts(), (0, 1));
    }
}
