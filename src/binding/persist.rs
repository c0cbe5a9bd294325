//! The persistent session store of a client made with `persistence=DIR`: the
//! log file `DIR/mqtt.log` written through the firmware's file API (the C
//! helpers `mqtt_c_file_*`), in the record format of `proto::store`.
//!
//! - `publish()` of a QoS 1/2 message appends its record and makes it durable
//!   (flush: fsync on the unix port, sync on littlefs/FAT) before it returns.
//! - The engine's state changes are appended before anything that depends on
//!   them leaves: before the send buffer is written to the transport and
//!   before the pump delivers the events. A change that guards a packet
//!   (PUBREC received, inbound QoS 2 id held or released) is made durable
//!   first; the others (sent, complete) are written without a flush.
//! - An inbound QoS 2 message is delivered between two records: `B pid`,
//!   durable before `on_message` is called, and `I pid` after it returns
//!   (durable before PUBREC leaves). A restart that finds a `B` without its
//!   `I` delivers the broker's resend of that id with `in_doubt()` true.
//! - The log is compacted (the live state written to `DIR/mqtt.new`, which
//!   then replaces the log) at start-up, when it outgrows its live state, and
//!   after a failed write (a half-written record would hide what follows it).
use super::client::*;
use super::ffi::*;
use super::mem::GcBuf;
use super::obj::*;
use crate::proto::codec::{QoS, Sink};
use crate::proto::engine::Kind;
use crate::proto::rc;
use crate::proto::store::{self, Change, InDoubt, Publish, Record, Restore, StoreError};

const LOG_NAME: &[u8] = b"/mqtt.log";
const NEW_NAME: &[u8] = b"/mqtt.new";

pub struct Store {
    log_path: Obj,
    new_path: Obj,
    /// The log, open for appending (NULL when not open).
    file: Obj,
    log_len: usize,
    /// Bytes of the live state at the last compaction.
    live_len: usize,
    /// Records are encoded here, then written with one call.
    scratch: GcBuf,
    /// A write failed: the log must be rewritten before anything is appended.
    broken: bool,
    /// Changes that guard a packet were written but are not durable yet.
    unsynced: bool,
    /// The inbound QoS 2 id whose `on_message` runs now (0: none).
    delivering: u16,
    /// Deliveries that began before a restart and never ended (see `proto::store`).
    in_doubt: InDoubt,
}

fn persistence_error() -> ApiError {
    ApiError::Mqtt(rc::PERSISTENCE_ERROR)
}

/// `dir` + `name` as a str object.
unsafe fn join(buf: &mut GcBuf, dir: &[u8], name: &[u8]) -> ApiResult<Obj> {
    buf.clear();
    if !buf.put(dir) || !buf.put(name) {
        return Err(ApiError::Memory);
    }
    let s = buf.get(0..).unwrap_or(&[]);
    let o = mqtt_c_new_str(s.as_ptr() as *const _, s.len());
    buf.clear();
    if o.is_null() {
        Err(ApiError::Memory)
    } else {
        Ok(o)
    }
}

/// Replayed records go into the engine.
struct IntoEngine<'a>(&'a mut Client);

impl Restore for IntoEngine<'_> {
    fn apply(&mut self, r: &Record<'_>) -> Result<(), i32> {
        if let Some(st) = self.0.store.as_mut() {
            st.in_doubt.apply(r);
        }
        let e = &mut self.0.engine;
        match *r {
            Record::Publish(p) => unsafe {
                // A packet id (or mid) is only reused after its message completed: an
                // older entry holding it lost its "complete" record to the power cut.
                let q = e.queue();
                let stale = (0..crate::proto::engine::Queue::len(q)).find_map(|i| {
                    crate::proto::engine::Queue::get(q, i)
                        .filter(|x| x.packet_id() == p.pid || x.mid() == p.mid)
                        .map(|x| x.mid())
                });
                if let Some(old) = stale {
                    e.restore_done(old)?;
                }
                let topic = core::str::from_utf8(p.topic).map_err(|_| rc::BAD_STRUCTURE)?;
                let t = mqtt_c_new_str(topic.as_ptr() as *const _, topic.len());
                let b = mqtt_c_new_bytes(p.payload.as_ptr(), p.payload.len());
                if t.is_null() || b.is_null() {
                    return Err(rc::FAILURE);
                }
                e.restore_publish(Req::publish(t, b), p.qos, p.retain, p.mid, p.pid, p.state)
            },
            Record::State { mid, state } => e.restore_state(mid, state),
            Record::Done { mid } => e.restore_done(mid),
            Record::InboundDelivering { .. } => Ok(()),
            Record::InboundHeld { pid } => e.restore_inbound_qos2(pid, true),
            Record::InboundReleased { pid } => e.restore_inbound_qos2(pid, false),
            Record::InboundCleared => e.restore_inbound_qos2_cleared(),
            Record::Header { .. } => Ok(()),
        }
    }
}

impl Client {
    /// Opens (or makes) the store in `dir` and restores the session saved there.
    pub(super) unsafe fn open_store(&mut self, dir: Obj) -> ApiResult<()> {
        let d = str_data(dir).ok_or(ApiError::Type("persistence must be a str (a directory)"))?;
        if d.is_empty() {
            return Err(persistence_error());
        }
        if mqtt_c_fs_dir(dir, true) != 1 {
            return Err(persistence_error());
        }
        let dir_bytes = d.strip_suffix(b"/").filter(|s| !s.is_empty()).unwrap_or(d);
        let mut scratch = GcBuf::new();
        let log_path = join(&mut scratch, dir_bytes, LOG_NAME)?;
        let new_path = join(&mut scratch, dir_bytes, NEW_NAME)?;
        self.store = Some(Store {
            log_path,
            new_path,
            file: NULL,
            log_len: 0,
            live_len: 0,
            scratch,
            broken: true,
            unsynced: false,
            delivering: 0,
            in_doubt: InDoubt::default(),
        });
        self.engine.set_persistence(true);
        self.restore()?;
        self.compact().map_err(|_| persistence_error())
    }

    /// Reads the log (if any) and replays it into the engine.
    unsafe fn restore(&mut self) -> ApiResult<()> {
        let st = match self.store.as_mut() {
            Some(s) => s,
            None => return Ok(()),
        };
        let mut f = NULL;
        let r = mqtt_c_file_open(st.log_path, b"rb\0".as_ptr() as *const _, &mut f);
        if r == MQTT_ENOENT as i32 {
            return Ok(());
        }
        if r != 0 {
            return Err(persistence_error());
        }
        let mut buf = GcBuf::new();
        let mut chunk = [0u8; 512];
        let res = loop {
            let mut got = 0usize;
            if mqtt_c_file_read(f, chunk.as_mut_ptr(), chunk.len(), &mut got) != 0 {
                break Err(persistence_error());
            }
            if got == 0 {
                break Ok(());
            }
            if !buf.put(&chunk[..got]) {
                break Err(ApiError::Memory);
            }
        };
        mqtt_c_file_close(f);
        res?;
        let id = str_data(self.client_id).unwrap_or(&[]);
        let log = buf.get(0..).unwrap_or(&[]);
        let replayed = store::replay(log, id, &mut IntoEngine(self));
        buf.release();
        let replayed = replayed.map_err(|e| match e {
            StoreError::Restore(rc::FAILURE) => ApiError::Memory,
            _ => persistence_error(),
        })?;
        self.engine.restore_next_mid(replayed.next_mid);
        self.engine.restore_finish();
        Ok(())
    }

    /// Appends the records encoded in the scratch buffer; durable when `sync`.
    fn append_scratch(&mut self, sync: bool) -> Result<(), ()> {
        let st = self.store.as_mut().ok_or(())?;
        let data = st.scratch.get(0..).unwrap_or(&[]);
        let n = data.len();
        let ok = unsafe {
            !st.file.is_null()
                && (n == 0 || mqtt_c_file_write(st.file, data.as_ptr(), n) == 0)
                && (!sync || mqtt_c_file_flush(st.file) == 0)
        };
        st.scratch.clear();
        if !ok {
            st.broken = true;
            return Err(());
        }
        if sync {
            st.unsynced = false;
        }
        st.log_len += n;
        Ok(())
    }

    /// Stores the QoS 1/2 publish `mid` that `publish()` just queued (the engine's earlier
    /// changes were written before it was queued: see `Client::publish`). On failure it is
    /// taken back out of the engine and the call raises -2.
    pub(super) fn store_publish(&mut self, mid: u32) -> ApiResult<()> {
        let broken = self.store.as_ref().map_or(true, |st| st.broken);
        let ok = !broken && self.encode_publish(mid) && self.append_scratch(true).is_ok();
        if !ok {
            if let Some(st) = self.store.as_mut() {
                st.scratch.clear();
            }
            self.engine.cancel_queued(mid);
            return Err(persistence_error());
        }
        // The message is durable; a compaction that fails is retried by the next write.
        let _ = self.compact_if_grown();
        Ok(())
    }

    /// Compacts the log when it has outgrown its live state (see `store::needs_compaction`).
    fn compact_if_grown(&mut self) -> Result<(), ()> {
        let grown = self.store.as_ref().is_some_and(|st| store::needs_compaction(st.log_len, st.live_len));
        if grown {
            self.compact()?;
        }
        Ok(())
    }

    /// Encodes the queued publish `mid` into the scratch buffer.
    fn encode_publish(&mut self, mid: u32) -> bool {
        let q = self.engine.queue();
        let n = crate::proto::engine::Queue::len(q);
        let entry = (0..n).rev().find_map(|i| crate::proto::engine::Queue::get(q, i).filter(|e| e.mid() == mid));
        let (e, st) = match (entry, self.store.as_mut()) {
            (Some(e), Some(st)) => (e, st),
            _ => return false,
        };
        match publish_record(e) {
            Some(p) => store::encode(&mut st.scratch, &Record::Publish(p)),
            None => false,
        }
    }

    /// Writes the engine's queued state changes, and compacts the log when it has grown
    /// enough. With `durable`, what guards a packet (see `Change::needs_sync`) is made
    /// durable too: call it so before writing to the transport. Err: the store failed.
    pub(super) fn sync_changes(&mut self, durable: bool) -> Result<(), ()> {
        let (broken, unsynced) = match self.store.as_ref() {
            Some(st) => (st.broken, st.unsynced),
            None => return Ok(()),
        };
        if broken {
            return self.compact();
        }
        let mut sync = false;
        let mut any = false;
        while let Some(c) = self.engine.poll_change() {
            if matches!(c, Change::InboundHeld { .. }) {
                // recorded by `end_delivery`, once on_message has returned
                continue;
            }
            if let Some(st) = self.store.as_mut() {
                if c == Change::InboundCleared {
                    // the broker has no session: it resends nothing
                    st.in_doubt.clear();
                }
            }
            sync |= c.needs_sync();
            any = true;
            if let Some(st) = self.store.as_mut() {
                if !store::encode(&mut st.scratch, &Record::from(c)) {
                    st.scratch.clear();
                    st.broken = true;
                    return Err(());
                }
            }
        }
        if self.engine.take_changes_dropped() {
            return self.compact();
        }
        if !any && !(durable && unsynced) {
            return Ok(());
        }
        if let Some(st) = self.store.as_mut() {
            st.unsynced |= sync;
        }
        let unsynced = self.store.as_ref().is_some_and(|st| st.unsynced);
        self.append_scratch(durable && unsynced)?;
        self.compact_if_grown()
    }

    /// Rewrites the log from the engine's current state: the live state goes to
    /// `mqtt.new`, made durable, which then replaces `mqtt.log` (a power cut leaves
    /// either the old log or the new one).
    pub(super) fn compact(&mut self) -> Result<(), ()> {
        let res = unsafe { self.write_new_log() };
        let st = self.store.as_mut().ok_or(())?;
        // the rewrite's buffer goes back to the heap; records are small again after it
        st.scratch.release();
        match res {
            Ok(len) => {
                st.log_len = len;
                st.live_len = len;
                st.broken = false;
                st.unsynced = false;
                self.engine.clear_changes();
                Ok(())
            }
            Err(()) => {
                st.broken = true;
                Err(())
            }
        }
    }

    unsafe fn write_new_log(&mut self) -> Result<usize, ()> {
        let (new_path, log_path) = match self.store.as_ref() {
            Some(st) => (st.new_path, st.log_path),
            None => return Err(()),
        };
        let mut f = NULL;
        if mqtt_c_file_open(new_path, b"wb\0".as_ptr() as *const _, &mut f) != 0 {
            return Err(());
        }
        let written = self.write_live_state(f);
        let synced = written.is_ok() && mqtt_c_file_flush(f) == 0;
        mqtt_c_file_close(f);
        let len = written?;
        if !synced {
            return Err(());
        }
        let st = self.store.as_mut().ok_or(())?;
        if !st.file.is_null() {
            mqtt_c_file_close(st.file);
            st.file = NULL;
        }
        if mqtt_c_fs_rename(new_path, log_path) != 0 {
            return Err(());
        }
        let mut nf = NULL;
        if mqtt_c_file_open(log_path, b"ab\0".as_ptr() as *const _, &mut nf) != 0 {
            return Err(());
        }
        st.file = nf;
        Ok(len)
    }

    /// Writes header, unfinished publishes and held inbound ids to `f`; the bytes written.
    unsafe fn write_live_state(&mut self, f: Obj) -> Result<usize, ()> {
        let id = str_data(self.client_id).unwrap_or(&[]);
        let next_mid = self.engine.next_mid();
        let engine = &self.engine;
        let st = self.store.as_mut().ok_or(())?;
        let mut total = 0usize;
        let flush_scratch = |buf: &mut GcBuf, total: &mut usize| -> Result<(), ()> {
            let d = buf.get(0..).unwrap_or(&[]);
            if !d.is_empty() && mqtt_c_file_write(f, d.as_ptr(), d.len()) != 0 {
                return Err(());
            }
            *total += d.len();
            buf.clear();
            Ok(())
        };
        st.scratch.clear();
        if !store::encode(&mut st.scratch, &Record::Header { next_mid, client_id: id }) {
            return Err(());
        }
        let q = engine.queue();
        for i in 0..crate::proto::engine::Queue::len(q) {
            if let Some(p) = crate::proto::engine::Queue::get(q, i).and_then(publish_record) {
                if !store::encode(&mut st.scratch, &Record::Publish(p)) {
                    return Err(());
                }
            }
            if st.scratch.len() >= 4096 {
                flush_scratch(&mut st.scratch, &mut total)?;
            }
        }
        let mut ok = true;
        // A held id is recorded as delivered once on_message has returned: not the one
        // it runs for (recorded as begun), nor one whose message waits to be delivered.
        let delivering = st.delivering;
        let undelivered = engine.undelivered_qos2();
        engine.for_each_inbound_qos2(|pid| {
            if pid != delivering && Some(pid) != undelivered {
                ok &= store::encode(&mut st.scratch, &Record::InboundHeld { pid });
            }
        });
        if delivering != 0 {
            ok &= store::encode(&mut st.scratch, &Record::InboundDelivering { pid: delivering });
        }
        for &pid in st.in_doubt.ids() {
            if pid != delivering {
                ok &= store::encode(&mut st.scratch, &Record::InboundDelivering { pid });
            }
        }
        if !ok {
            return Err(());
        }
        flush_scratch(&mut st.scratch, &mut total)?;
        Ok(total)
    }

    /// Before `on_message` for an inbound QoS 2 message: its `B` record is made
    /// durable, so that a power cut from here on leaves the message in doubt
    /// rather than lost or silently repeated. A failed write leaves the store
    /// broken; the message is delivered all the same, and the failure shows at
    /// the next write to the transport (before PUBREC could leave).
    pub(super) fn begin_delivery(&mut self, pid: u16) {
        let st = match self.store.as_mut() {
            Some(st) => st,
            None => return,
        };
        st.delivering = pid;
        if st.broken {
            // the rewrite records this delivery as begun (see `write_live_state`)
            let _ = self.compact();
            return;
        }
        if !store::encode(&mut st.scratch, &Record::InboundDelivering { pid }) {
            st.scratch.clear();
            st.broken = true;
            return;
        }
        let _ = self.append_scratch(true);
    }

    /// After `on_message` returned: the delivery's `I` record is written (made
    /// durable before PUBREC leaves), with the changes queued meanwhile. With a
    /// broken store the next rewrite records it (the id is held and no longer
    /// being delivered).
    pub(super) fn end_delivery(&mut self, pid: u16) {
        let st = match self.store.as_mut() {
            Some(st) => st,
            None => return,
        };
        st.delivering = 0;
        st.in_doubt.end(pid);
        if !st.broken {
            if !store::encode(&mut st.scratch, &Record::InboundHeld { pid }) {
                st.scratch.clear();
                st.broken = true;
                return;
            }
            st.unsynced = true;
            if self.append_scratch(false).is_err() {
                return;
            }
        }
        let _ = self.sync_changes(false);
    }

    /// `in_doubt()`: whether the message `on_message` runs for now began its
    /// delivery before a restart that cut it short (it may be a repeat).
    pub fn in_doubt(&self) -> bool {
        self.store.as_ref().is_some_and(|st| st.delivering != 0 && st.in_doubt.contains(st.delivering))
    }

    /// Closes the log (the client goes away).
    pub(super) fn close_store(&mut self) {
        if let Some(st) = self.store.as_mut() {
            if !st.file.is_null() {
                unsafe { mqtt_c_file_close(st.file) };
                st.file = NULL;
            }
        }
    }
}

/// The record of a queued QoS 1/2 publish (None for anything else).
fn publish_record(e: &crate::proto::engine::Entry<Req>) -> Option<Publish<'_>> {
    use crate::proto::engine::Request;
    match e.kind() {
        Kind::Publish { qos, retain } if qos != QoS::AtMostOnce => Some(Publish {
            mid: e.mid(),
            pid: e.packet_id(),
            qos,
            retain,
            state: e.state(),
            topic: e.handle().topic(),
            payload: e.handle().payload(),
        }),
        _ => None,
    }
}
