//! The engine's side of a persistent session store ([`crate::proto::store`]): the queue of
//! state changes the binding writes to its log, and the restore API that puts a replayed
//! session back into an engine that has not connected yet.

use super::*;

/// Whether the crate is built with persistent sessions (cargo feature `persistence`).
/// Without it `persistence()` is a constant false and the change queue's code, left
/// unreachable, is compiled out: ports without a file system pay no flash for it.
const BUILT_IN: bool = cfg!(feature = "persistence");

impl<H: Request, Q: Queue<Entry<H>>, M, P: Queue<u16>> Engine<H, Q, M, P> {
    /// Turns the queue of state changes on or off (off by default: nothing is queued and
    /// nothing holds back the engine).
    pub fn set_persistence(&mut self, on: bool) {
        self.persist = BUILT_IN && on;
        if !on {
            self.changes.clear();
        }
    }

    /// Whether state changes are queued.
    pub fn persistence(&self) -> bool {
        BUILT_IN && self.persist
    }

    /// The next state change to record, oldest first. The binding stores every change
    /// before it writes to the transport what `poll_transmit` encoded after it; a change
    /// whose [`Change::needs_sync`] is true must be durable by then. While changes wait,
    /// the engine stops reading input and writing new requests once the queue is nearly
    /// full, and it reads nothing after an inbound QoS 2 PUBLISH until its
    /// [`Change::InboundHeld`] is taken and its `Event::Message` polled: the binding
    /// records the id as delivered once the application has had the message (see
    /// [`Engine::undelivered_qos2`]).
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Drops the queued changes (after the binding rewrote its store from the engine's
    /// current state, which includes them).
    pub fn clear_changes(&mut self) {
        self.changes.clear();
        self.changes_dropped = false;
    }

    pub(super) fn changes_free(&self) -> usize {
        if self.persistence() {
            CHANGE_CAPACITY - self.changes.len()
        } else {
            CHANGE_CAPACITY
        }
    }

    /// An inbound QoS 2 id is held but its change is not yet taken by `poll_change`, or
    /// its message not yet polled: no further packet is read until both are, so that at
    /// most one inbound QoS 2 message at a time is held and not yet delivered.
    pub(super) fn inbound_unsaved(&self) -> bool {
        self.persistence()
            && (self.changes.iter().any(|c| matches!(c, Change::InboundHeld { .. }))
                || self.undelivered_qos2().is_some())
    }

    /// The packet id of the inbound QoS 2 message whose `Event::Message` waits to be
    /// polled (at most one with persistence on, see `poll_change`). Its id is held, but
    /// a store must not record it as delivered: the application has not had it yet.
    pub fn undelivered_qos2(&self) -> Option<u16> {
        self.events.iter().find_map(|e| match e {
            Event::Message { qos: QoS::ExactlyOnce, pid, .. } => Some(*pid),
            _ => None,
        })
    }

    pub(super) fn note(&mut self, c: Change) {
        // Room is checked before the input or the request that causes a change is taken;
        // a change that still finds the queue full (a request given up when the connection
        // is lost) asks for a rewrite of the store instead.
        if self.persistence() && self.changes.push_back(c).is_err() {
            self.changes_dropped = true;
        }
    }

    /// Whether a change was dropped since the last call (the queue was full): the binding
    /// then rewrites its store from the engine's current state.
    pub fn take_changes_dropped(&mut self) -> bool {
        core::mem::replace(&mut self.changes_dropped, false)
    }

    /// The mid the next request gets.
    pub fn next_mid(&self) -> u32 {
        self.next_mid
    }

    /// Whether an inbound QoS 2 packet id is held (between PUBLISH and PUBREL).
    pub fn inbound_qos2_holds(&self, pid: u16) -> bool {
        self.qos2_seen(pid)
    }

    /// Calls `f` with every inbound QoS 2 packet id held.
    pub fn for_each_inbound_qos2(&self, mut f: impl FnMut(u16)) {
        for i in 0..self.inbound_qos2.len() {
            if let Some(&pid) = self.inbound_qos2.get(i) {
                f(pid);
            }
        }
    }

    /// Takes back a publish that `publish()` just queued and that was never written (the
    /// binding could not store it). True when it was removed.
    pub fn cancel_queued(&mut self, mid: u32) -> bool {
        let i = match (0..self.queue.len()).rev().find(|&i| self.queue.get(i).is_some_and(|e| e.mid == mid)) {
            Some(i) => i,
            None => return false,
        };
        if self.queue.get(i).is_some_and(|e| e.state == EntryState::Queued) {
            self.remove_entry(i).is_some()
        } else {
            false
        }
    }

    fn restoring(&self) -> Result<(), i32> {
        if self.state == ConnState::Idle && self.gen == 0 && !self.close_pending {
            Ok(())
        } else {
            Err(rc::COMMAND_IGNORED)
        }
    }

    /// Restores a QoS 1/2 publish of an earlier session with its mid, packet id and state,
    /// behind the entries already there. Only before the first connection. A `Sent` entry is
    /// re-sent with DUP after CONNACK, a `Released` one re-sends PUBREL, a `Queued` one is
    /// sent as new. Call [`Engine::restore_finish`] when every entry is in.
    /// `Err(-8)` for QoS 0, packet id 0 or an id already held; `Err(-18)` once connected;
    /// `Err(-1)` when the queue storage is full.
    pub fn restore_publish(
        &mut self,
        h: H,
        qos: QoS,
        retain: bool,
        mid: u32,
        pid: u16,
        state: EntryState,
    ) -> Result<(), i32> {
        self.restoring()?;
        if qos == QoS::AtMostOnce || pid == 0 || mid == 0 || self.find_entry(pid, |_| true).is_some() {
            return Err(rc::BAD_STRUCTURE);
        }
        if state == EntryState::Released && qos != QoS::ExactlyOnce {
            return Err(rc::BAD_STRUCTURE);
        }
        let e = Entry {
            handle: h,
            kind: Kind::Publish { qos, retain },
            mid,
            pid,
            slot: state != EntryState::Queued,
            state,
            gen: 0,
            seq: 0,
            sent_at: 0,
        };
        self.queue.push_back(e).map_err(|_| rc::FAILURE)?;
        self.sent_end = self.queue.len();
        self.next_pid = if pid == 65_535 { 1 } else { pid + 1 };
        if mid >= self.next_mid {
            self.next_mid = if mid == u32::MAX { 1 } else { mid + 1 };
        }
        Ok(())
    }

    /// A restored publish moved on (`Sent`, or `Released` for QoS 2).
    pub fn restore_state(&mut self, mid: u32, state: EntryState) -> Result<(), i32> {
        self.restoring()?;
        if let Some(e) = (0..self.queue.len()).find_map(|i| self.queue.get(i).filter(|e| e.mid == mid).map(|_| i)) {
            if let Some(e) = self.queue.get_mut(e) {
                let qos2 = matches!(e.kind, Kind::Publish { qos: QoS::ExactlyOnce, .. });
                if state == EntryState::Released && !qos2 {
                    return Err(rc::BAD_STRUCTURE);
                }
                e.state = state;
                e.slot = state != EntryState::Queued;
            }
        }
        Ok(())
    }

    /// A restored publish is complete: it goes.
    pub fn restore_done(&mut self, mid: u32) -> Result<(), i32> {
        self.restoring()?;
        if let Some(i) = (0..self.queue.len()).find(|&i| self.queue.get(i).is_some_and(|e| e.mid == mid)) {
            self.queue.remove(i);
        }
        Ok(())
    }

    /// An inbound QoS 2 id held (or released) in an earlier session. `Err(-1)` when the
    /// id store is full.
    pub fn restore_inbound_qos2(&mut self, pid: u16, held: bool) -> Result<(), i32> {
        self.restoring()?;
        if !held {
            self.qos2_release(pid);
        } else if !self.qos2_seen(pid) {
            self.inbound_qos2.push_back(pid).map_err(|_| rc::FAILURE)?;
        }
        Ok(())
    }

    /// Releases every inbound QoS 2 id of an earlier session.
    pub fn restore_inbound_qos2_cleared(&mut self) -> Result<(), i32> {
        self.restoring()?;
        self.qos2_clear();
        Ok(())
    }

    /// The next mid is at least `mid` (mids stay unique across restarts).
    pub fn restore_next_mid(&mut self, mid: u32) {
        if mid > self.next_mid {
            self.next_mid = mid;
        }
    }

    /// Recomputes the counters from the restored queue. Packet ids are searched from now
    /// on (restored ids may be anywhere in the id space).
    pub fn restore_finish(&mut self) {
        let (mut inflight, mut buffered, mut queued, mut pids) = (0, 0, 0, 0);
        for i in 0..self.queue.len() {
            if let Some(e) = self.queue.get(i) {
                if e.pid != 0 {
                    pids += 1;
                }
                if e.state == EntryState::Queued {
                    queued += 1;
                }
                if let Kind::Publish { qos, .. } = e.kind {
                    if !e.slot {
                        buffered += 1;
                    } else if qos != QoS::AtMostOnce {
                        inflight += 1;
                    }
                }
            }
        }
        self.inflight = inflight;
        self.buffered = buffered;
        self.queued = queued;
        self.pids_in_use = pids;
        self.pid_wrapped = pids > 0 || self.pid_wrapped;
        self.resend_from = 0;
        self.unsent_from = 0;
        self.sent_end = self.queue.len();
    }
}
