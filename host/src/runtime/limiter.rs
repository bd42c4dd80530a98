//! Memory limits of one instance, and of all instances together.
//!
//! Every store gets a [`SandboxLimiter`]. It charges each linear-memory
//! growth (the initial size included) against two budgets at once:
//! - the service's `memory_mib`, counting all memories of the instance
//!   together, so a component with several memories gets no more;
//! - the host's [`HostMemory`], shared by every store, so a burst of
//!   memory-hungry requests fails in the guests instead of getting the
//!   host killed.
//!
//! A refused growth is `memory.grow` returning -1 in the guest (an
//! allocation failure), never a host error. What a store was charged goes
//! back to the host budget when the store is dropped.

use crate::engine::PoolLimits;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::ResourceLimiter;

/// Linear memory all instances of a host may hold together.
#[derive(Debug)]
pub struct HostMemory {
    budget: usize,
    used: AtomicUsize,
}

impl HostMemory {
    /// A budget of `budget` bytes, none of it used.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(Self {
            budget,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes charged to live stores now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.budget)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Which budget refused a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRefusal {
    /// The instance's own cap, after `needed` bytes in all its memories.
    Instance {
        /// What the memories would have held together.
        needed: usize,
        /// The cap.
        cap: usize,
    },
    /// The host-wide budget, asked for `wanted` more bytes.
    Host {
        /// The growth asked for.
        wanted: usize,
        /// The budget.
        budget: usize,
    },
    /// One memory past the largest it may be: its own declared maximum or
    /// the pool's slot, whichever is smaller.
    Memory {
        /// The size it would have grown to, in bytes.
        desired: usize,
        /// The largest it may be, in bytes.
        largest: usize,
    },
    /// One table past the largest it may be: its own declared maximum or
    /// the pool's slot, whichever is smaller.
    Table {
        /// The elements it would have held.
        desired: usize,
        /// The most it may hold.
        largest: usize,
    },
}

impl std::fmt::Display for MemoryRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instance { needed, cap } => write!(
                f,
                "its memories would need {} MiB together, over the cap of {} MiB per instance (`memory_mib`, else `[runtime] max_memory_mib`)",
                needed.div_ceil(1 << 20),
                cap >> 20
            ),
            Self::Host { wanted, budget } => write!(
                f,
                "the host's linear-memory budget of {} MiB for all instances together has no room for {} MiB more (`[runtime] host_memory_mib`)",
                budget >> 20,
                wanted.div_ceil(1 << 20)
            ),
            Self::Memory { desired, largest } => write!(
                f,
                "a memory would grow to {} MiB, past the {} MiB it may reach (its own maximum, else `[runtime] max_memory_mib`)",
                desired.div_ceil(1 << 20),
                largest >> 20
            ),
            Self::Table { desired, largest } => write!(
                f,
                "a table would grow to {desired} elements, past the {largest} it may hold (its own maximum, else the pool's)"
            ),
        }
    }
}

/// The resource limiter of one store.
pub struct SandboxLimiter {
    host: Arc<HostMemory>,
    /// All memories of the instance together, in bytes.
    cap: usize,
    pool: PoolLimits,
    /// Bytes this store holds in the host budget; returned on drop.
    charged: usize,
    /// The last growth refused, for the log and for deploy errors.
    refused: Option<MemoryRefusal>,
}

impl SandboxLimiter {
    /// A limiter capping the instance at `cap` bytes, charging `host`.
    pub fn new(host: Arc<HostMemory>, cap: usize, pool: PoolLimits) -> Self {
        Self {
            host,
            cap,
            pool,
            charged: 0,
            refused: None,
        }
    }

    /// Why a growth was last refused, if one was.
    pub fn refusal(&self) -> Option<MemoryRefusal> {
        self.refused
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growth wasmtime refuses anyway is not charged: once this returns
        // true, a failure is only an OS one, which stays charged (on the
        // safe side) until the store goes.
        let largest = maximum.map_or(self.pool.memory_bytes, |m| m.min(self.pool.memory_bytes));
        if desired > largest {
            // Recorded too: an instance refused anything is not reused.
            self.refused = Some(MemoryRefusal::Memory { desired, largest });
            return Ok(false);
        }
        let delta = desired.saturating_sub(current);
        let needed = self.charged.saturating_add(delta);
        if needed > self.cap {
            self.refused = Some(MemoryRefusal::Instance {
                needed,
                cap: self.cap,
            });
            return Ok(false);
        }
        if !self.host.reserve(delta) {
            self.refused = Some(MemoryRefusal::Host {
                wanted: delta,
                budget: self.host.budget,
            });
            return Ok(false);
        }
        self.charged = needed;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let largest = maximum.map_or(self.pool.table_elements, |m| {
            m.min(self.pool.table_elements)
        });
        if desired > largest {
            self.refused = Some(MemoryRefusal::Table { desired, largest });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.pool.core_instances as usize
    }

    fn tables(&self) -> usize {
        self.pool.tables as usize
    }

    fn memories(&self) -> usize {
        self.pool.memories as usize
    }
}

impl Drop for SandboxLimiter {
    fn drop(&mut self) {
        self.host.release(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn pool() -> PoolLimits {
        PoolLimits {
            core_instances: 4,
            memories: 4,
            tables: 4,
            memory_bytes: 64 * MIB,
            table_elements: 100,
        }
    }

    #[test]
    fn all_memories_of_an_instance_share_its_cap() {
        let host = HostMemory::new(1024 * MIB);
        let mut limiter = SandboxLimiter::new(Arc::clone(&host), 10 * MIB, pool());
        assert!(limiter.memory_growing(0, 6 * MIB, None).unwrap());
        // A second memory of the same instance: 6 + 6 is over 10.
        assert!(!limiter.memory_growing(0, 6 * MIB, None).unwrap());
        assert!(matches!(
            limiter.refusal(),
            Some(MemoryRefusal::Instance { .. })
        ));
        assert!(limiter.memory_growing(0, 4 * MIB, None).unwrap());
        assert_eq!(host.used(), 10 * MIB);
    }

    #[test]
    fn the_host_budget_is_shared_and_given_back_on_drop() {
        let host = HostMemory::new(10 * MIB);
        let mut first = SandboxLimiter::new(Arc::clone(&host), 64 * MIB, pool());
        let mut second = SandboxLimiter::new(Arc::clone(&host), 64 * MIB, pool());
        assert!(first.memory_growing(0, 8 * MIB, None).unwrap());
        assert!(
            !second.memory_growing(0, 4 * MIB, None).unwrap(),
            "8 + 4 MiB is over the 10 MiB host budget"
        );
        assert!(matches!(second.refusal(), Some(MemoryRefusal::Host { .. })));
        drop(first);
        assert_eq!(host.used(), 0, "a dropped store gives its memory back");
        assert!(second.memory_growing(0, 4 * MIB, None).unwrap());
    }

    #[test]
    fn growth_past_the_pool_slot_is_refused_without_a_charge() {
        let host = HostMemory::new(1024 * MIB);
        let mut limiter = SandboxLimiter::new(Arc::clone(&host), 512 * MIB, pool());
        assert!(!limiter.memory_growing(0, 65 * MIB, None).unwrap());
        assert_eq!(host.used(), 0);
        assert!(matches!(
            limiter.refusal(),
            Some(MemoryRefusal::Memory { .. })
        ));
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert!(!limiter.table_growing(0, 101, None).unwrap());
        assert!(matches!(
            limiter.refusal(),
            Some(MemoryRefusal::Table {
                desired: 101,
                largest: 100
            })
        ));
    }
}
