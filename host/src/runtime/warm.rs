//! Warm instances, for services that opt in with `instance_reuse = N`:
//! an instance that answered a request or took an event well serves the
//! next one, up to N in all, instead of a fresh instance each time.
//!
//! An instance serves one request or event at a time: it is taken out of
//! the pool for it and put back when it (a response's body included)
//! ended well. One that trapped, timed out, went over a limit or lost its client
//! is dropped, never reused. A deploy or rollback retires the instances of
//! every other version. One of a component slow to instantiate that has
//! served its share is dropped, and the instance taking its place made,
//! off the request's path (see `Refill`): a request does not wait for the
//! one before it to be cleaned up, nor for its own instance to be made.

use crate::state::RequestState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use wasmtime::{Engine, Store};

/// An instance between requests or events.
pub(super) struct WarmInstance {
    /// The version it runs: the loaded version's own `Arc`, compared by
    /// identity, as an instance only works with the compiled component it
    /// was made from (a version loaded again, by a deploy of the same
    /// bytes, is another).
    pub version: Arc<str>,
    /// Its store.
    pub store: Store<RequestState>,
    /// The instance.
    pub live: super::instance::Live,
    /// What else it carries from one run to the next.
    pub record: Record,
    /// The [`IdleClock`] tick at which it was last put back.
    idle_since: u64,
}

impl WarmInstance {
    /// An instance of `version` in `store`, about to be kept.
    pub(super) fn new(
        version: Arc<str>,
        store: Store<RequestState>,
        live: super::instance::Live,
        record: Record,
    ) -> Self {
        Self {
            version,
            store,
            live,
            record,
            idle_since: 0,
        }
    }
}

/// A coarse clock for how long instances idle: whole seconds since the
/// process first read it, brought up to date by the pruner and read with
/// one atomic load when an instance is put back (no clock read on the
/// request's path).
pub struct IdleClock(std::sync::atomic::AtomicU64);

/// The process's idle clock (shared by every host it runs).
pub static IDLE_CLOCK: IdleClock = IdleClock(std::sync::atomic::AtomicU64::new(0));

impl IdleClock {
    /// The tick it last showed.
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Brings it up to date; the tick now.
    pub fn update(&self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs();
        // Several hosts in one process (the tests) update it alike.
        self.0.fetch_max(now, Ordering::Relaxed).max(now)
    }
}

/// What an instance carries from one run to the next besides its store.
pub(super) struct Record {
    /// The CPU meter its store's epoch callback reads.
    pub meter: std::sync::Arc<super::meter::CpuMeter>,
    /// Requests and events it has served.
    pub uses: u32,
    /// How long making it took.
    pub made_in: std::time::Duration,
}

/// The idle warm instances of one service.
pub struct WarmPool {
    /// Requests one instance may serve.
    max_uses: u32,
    /// Idle instances kept; each holds a pool slot and its memory.
    max_idle: usize,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// The version whose instances may be kept.
    current: Option<Arc<str>>,
    /// The service was replaced or removed: nothing is kept any more.
    closed: bool,
    instances: Lists<WarmInstance>,
}

impl Idle {
    fn wants(&self, version: &Arc<str>, max_idle: usize) -> bool {
        !self.closed
            && self
                .current
                .as_ref()
                .is_none_or(|c| Arc::ptr_eq(c, version))
            && self.instances.len() < max_idle
    }
}

/// Lists idle instances are kept in, one per thread up to this many.
const LISTS: usize = 8;

thread_local! {
    /// This thread's list.
    static LIST: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % LISTS
    };
}

/// The list of the thread running now.
fn this_threads_list() -> usize {
    LIST.with(|list| *list)
}

/// Idle items, each in the list of the thread that put it back, most
/// recent last. A thread takes from its own list first, so an instance
/// tends to serve again on the core whose caches hold its memory (warm
/// hello: ~4% less server CPU a request than one list shared by all).
struct Lists<T> {
    lists: [Vec<T>; LISTS],
}

impl<T> Default for Lists<T> {
    fn default() -> Self {
        Self {
            lists: std::array::from_fn(|_| Vec::new()),
        }
    }
}

impl<T> Lists<T> {
    /// Items in all lists.
    fn len(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// Puts `item` at the end of list `list`.
    fn push(&mut self, list: usize, item: T) {
        self.lists[list % LISTS].push(item);
    }

    /// The last item of list `own` that is `wanted`, else the last of the
    /// next list that has one.
    fn take(&mut self, own: usize, wanted: impl Fn(&T) -> bool) -> Option<T> {
        let (list, at) = (0..LISTS).map(|i| (own + i) % LISTS).find_map(|list| {
            self.lists[list]
                .iter()
                .rposition(&wanted)
                .map(|at| (list, at))
        })?;
        Some(self.lists[list].swap_remove(at))
    }

    /// The oldest `wanted` item by `since`, from the longest list among
    /// equally old ones. Every item is looked at: [`Lists::take`]'s
    /// `swap_remove` leaves a list out of age order.
    fn take_oldest(&mut self, wanted: impl Fn(&T) -> bool, since: impl Fn(&T) -> u64) -> Option<T> {
        let (wanted, since) = (&wanted, &since);
        let (list, at) = self
            .lists
            .iter()
            .enumerate()
            .flat_map(|(list, items)| {
                let longer = std::cmp::Reverse(items.len());
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, item)| wanted(item))
                    .map(move |(at, item)| ((since(item), longer), (list, at)))
            })
            .min_by_key(|(age, _)| *age)
            .map(|(_, found)| found)?;
        Some(self.lists[list].remove(at))
    }

    /// Keeps the items that are `kept`; returns the others.
    fn split_off(&mut self, kept: impl Fn(&T) -> bool) -> Vec<T> {
        let mut gone = Vec::new();
        for list in &mut self.lists {
            let (stay, go): (Vec<T>, Vec<T>) = std::mem::take(list).into_iter().partition(&kept);
            *list = stay;
            gone.extend(go);
        }
        gone
    }
}

impl WarmPool {
    /// A pool of instances serving up to `max_uses` requests each, keeping
    /// at most `max_idle` of them idle.
    pub fn new(max_uses: u32, max_idle: usize) -> Self {
        Self {
            max_uses,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Idle::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The guarded lists are only pushed to and popped from.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle instance of `version`, if there is one: the one this
    /// thread put back last, else another thread's.
    pub(super) fn take(&self, version: &Arc<str>) -> Option<WarmInstance> {
        let own = this_threads_list();
        self.lock()
            .instances
            .take(own, |instance| Arc::ptr_eq(&instance.version, version))
    }

    /// Keeps `instance`, which has just served a request, for another,
    /// unless its version retired or enough instances are idle. One that
    /// has served its share is handed back instead, to be replaced.
    pub(super) fn give_back(&self, mut instance: WarmInstance) -> Option<WarmInstance> {
        instance.record.uses += 1;
        if instance.record.uses >= self.max_uses {
            return Some(instance);
        }
        self.keep(instance);
        None
    }

    /// Keeps `instance` idle in this thread's list, unless its version
    /// retired or enough instances are idle (it is dropped then).
    pub(super) fn keep(&self, mut instance: WarmInstance) {
        let own = this_threads_list();
        instance.idle_since = IDLE_CLOCK.now();
        let mut idle = self.lock();
        if !idle.wants(&instance.version, self.max_idle) {
            return;
        }
        idle.instances.push(own, instance);
    }

    /// Drops the instances idle since before tick `cutoff` of [`IDLE_CLOCK`],
    /// on a blocking thread when called inside a tokio runtime: resetting a
    /// large instance's memory takes milliseconds, which would hold up the
    /// connections of the worker thread doing it.
    pub fn drop_idle_before(&self, cutoff: u64) {
        let expired = self.lock().instances.split_off(|i| i.idle_since >= cutoff);
        if expired.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(expired))),
            Err(_) => drop(expired),
        }
    }

    /// Whether a new instance of `version` would be kept.
    pub(super) fn wants(&self, version: &Arc<str>) -> bool {
        self.lock().wants(version, self.max_idle)
    }

    /// Drops the idle instances of every version but `version`, and keeps
    /// only `version`'s from now on.
    pub fn retire_all_but(&self, version: &Arc<str>) {
        let retired = {
            let mut idle = self.lock();
            idle.current = Some(Arc::clone(version));
            idle.instances
                .split_off(|i| Arc::ptr_eq(&i.version, version))
        };
        // Dropped outside the lock: freeing instances returns pool slots.
        drop(retired);
    }

    /// Drops every idle instance and keeps none from now on: the service
    /// this pool belongs to was replaced (its spec changed) or removed.
    /// Each instance's store holds the service's context, which holds this
    /// pool, so instances left here would keep both, and their pool slots
    /// and memory, for good.
    pub fn close(&self) {
        let dropped = {
            let mut idle = self.lock();
            idle.closed = true;
            idle.instances.split_off(|_| false)
        };
        drop(dropped);
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().instances.len()
    }

    /// Instances idle now whose slots are in `engine`'s pool.
    pub(super) fn idle_on(&self, engine: &Engine) -> usize {
        let idle = self.lock();
        idle.instances
            .lists
            .iter()
            .flatten()
            .filter(|i| Engine::same(i.store.engine(), engine))
            .count()
    }

    /// Takes out the instance in `engine`'s pool idle longest (to the
    /// second), to be dropped (outside the lock) to free its slot.
    pub(super) fn evict_on(&self, engine: &Engine) -> Option<WarmInstance> {
        self.lock()
            .instances
            .take_oldest(|i| Engine::same(i.store.engine(), engine), |i| i.idle_since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_takes_the_last_item_it_put_back_first() {
        let mut lists = Lists::default();
        lists.push(0, ("v1", 'a'));
        lists.push(1, ("v1", 'b'));
        lists.push(0, ("v1", 'c'));
        lists.push(1, ("v1", 'd'));
        assert_eq!(lists.len(), 4);
        // Its own list, most recent first, then the next list's.
        assert_eq!(lists.take(1, |i| i.0 == "v1"), Some(("v1", 'd')));
        assert_eq!(lists.take(0, |i| i.0 == "v1"), Some(("v1", 'c')));
        assert_eq!(lists.take(0, |i| i.0 == "v1"), Some(("v1", 'a')));
        assert_eq!(lists.take(0, |i| i.0 == "v1"), Some(("v1", 'b')));
        assert_eq!(lists.len(), 0);
        // A thread whose list is empty finds the others' items.
        lists.push(2, ("v1", 'e'));
        assert_eq!(lists.take(LISTS - 1, |i| i.0 == "v1"), Some(("v1", 'e')));
        assert_eq!(lists.take(0, |i| i.0 == "v1"), None);
        assert_eq!(lists.len(), 0);
    }

    #[test]
    fn the_oldest_wanted_item_is_evicted_first_whichever_list_holds_it() {
        // (service, idle since)
        let mut lists = Lists::default();
        lists.push(0, ("a", 5));
        lists.push(1, ("b", 1));
        lists.push(1, ("a", 7));
        lists.push(1, ("a", 8));
        lists.push(2, ("a", 7));
        let since = |i: &(&str, u64)| i.1;
        assert_eq!(lists.take_oldest(|i| i.0 == "a", since), Some(("a", 5)));
        // Equally old: the longer list's.
        assert_eq!(lists.take_oldest(|i| i.0 == "a", since), Some(("a", 7)));
        assert_eq!(lists.lists[1], vec![("b", 1), ("a", 8)]);
        assert_eq!(lists.take_oldest(|i| i.0 == "a", since), Some(("a", 7)));
        assert_eq!(lists.take_oldest(|i| i.0 == "a", since), Some(("a", 8)));
        assert_eq!(lists.take_oldest(|i| i.0 == "a", since), None);
        assert_eq!(lists.len(), 1);
    }

    #[test]
    fn the_oldest_item_is_evicted_even_where_taking_one_reordered_its_list() {
        // (service, idle since)
        let mut lists = Lists::default();
        lists.push(0, ("a", 1));
        lists.push(0, ("b", 2));
        lists.push(0, ("c", 3));
        assert_eq!(lists.take(0, |i| i.0 == "a"), Some(("a", 1)));
        assert_eq!(lists.lists[0], vec![("c", 3), ("b", 2)]);
        let since = |i: &(&str, u64)| i.1;
        assert_eq!(lists.take_oldest(|_| true, since), Some(("b", 2)));
        assert_eq!(lists.take_oldest(|_| true, since), Some(("c", 3)));
    }

    #[test]
    fn only_wanted_items_are_taken_and_split_off_reaches_every_list() {
        let mut lists = Lists::default();
        for (list, item) in [
            (0, ("old", 1)),
            (3, ("new", 2)),
            (3, ("old", 3)),
            (9, ("old", 4)),
        ] {
            lists.push(list, item);
        }
        assert_eq!(lists.take(3, |i| i.0 == "new"), Some(("new", 2)));
        assert_eq!(lists.take(3, |i| i.0 == "new"), None);
        lists.push(5, ("new", 5));
        let mut gone = lists.split_off(|i| i.0 == "new");
        gone.sort();
        assert_eq!(gone, vec![("old", 1), ("old", 3), ("old", 4)]);
        assert_eq!(lists.len(), 1);
        assert_eq!(lists.take(0, |_| true), Some(("new", 5)));
    }
}
