//! The pump: one client's timers, transport and engine events, and the
//! engine's events turned into Python callbacks.
use super::client::*;
use super::ffi::*;
use crate::proto::codec::QoS;
use crate::proto::engine::Event;
use crate::proto::rc;

/// Runs one client: timers, transport, callbacks. Returns whether the client is
/// still active.
///
/// # Safety
/// `p` is a live client. No Rust borrow of it is held while a callback runs, as
/// a callback may call back into the client.
pub unsafe fn pump(p: *mut Client) -> bool {
    let mut busy = true;
    for _ in 0..64 {
        let t = now();
        let mut progress = (*p).drive(t);
        loop {
            let ev = (*p).engine.poll_event();
            let ev = match ev {
                Some(e) => e,
                None => break,
            };
            progress = true;
            dispatch(p, ev);
        }
        if !progress {
            busy = false;
            break;
        }
    }
    if busy {
        // Still work to do (e.g. TLS data already read from the socket, which
        // the waker cannot see): let other clients and the script run, then
        // come back.
        mqtt_c_request_pump();
    }
    let c = &mut *p;
    if c.store.is_some() {
        let _ = c.sync_changes(false);
    }
    let trim_at = c.trim_buffers(now());
    let active = c.engine.is_active() || !c.sock.is_null();
    if active {
        let mut deadline = c.engine.poll_timeout().unwrap_or(u64::MAX);
        if trim_at != 0 {
            deadline = deadline.min(trim_at);
        }
        let mut fd = c.fd;
        let want_write = c.want_write();
        if c.engine.is_receive_blocked() {
            // A new QoS 2 message waits for heap to record its id: try again soon
            // (the script may have freed memory). The socket is not read meanwhile,
            // so its readability is no reason to wake.
            deadline = deadline.min(now().saturating_add(RX_BLOCKED_RETRY_MS));
            if !want_write {
                fd = -1;
            }
        }
        mqtt_c_watch(c.slot, fd, want_write, deadline);
    }
    active
}

/// Whether the client has something to do now: its deadline has come, or its
/// socket is ready for what the client waits for. For event hooks of ports
/// without a waker thread.
///
/// # Safety
/// `p` is a live client.
pub unsafe fn ready(p: *const Client) -> bool {
    let c = &*p;
    if c.engine.poll_timeout().is_some_and(|d| d <= now()) {
        return true;
    }
    if c.sock.is_null() {
        return false;
    }
    let mut want = MQTT_STREAM_POLL_RD as usize;
    if c.want_write() {
        want |= MQTT_STREAM_POLL_WR as usize;
    }
    // The TCP socket while connecting, else the stream MQTT bytes come from.
    let s = if c.transport == Transport::Connecting { c.raw } else { c.sock };
    mqtt_c_sock_poll(s, want) != 0
}

unsafe fn dispatch(p: *mut Client, ev: Event<InMsg>) {
    match ev {
        Event::Connect { rc, session_present, reason } => {
            let code = if rc == rc::FAILURE { (*p).failure_code(reason) } else { rc };
            if rc >= 0 {
                (*p).fail_code = 0;
            }
            let cb = (*p).cbs[CB_CONNECT];
            mqtt_c_call_connect(cb, code as mp_int_t, session_present);
        }
        Event::Message { msg, qos, pid, .. } => {
            let cb = (*p).cbs[CB_MESSAGE];
            // With a store, a QoS 2 delivery is bracketed by its records (see
            // `persist.rs`); a failed write shows at the next write to the transport.
            let bracket = (*p).store.is_some() && qos == QoS::ExactlyOnce;
            if bracket {
                (*p).begin_delivery(pid);
            }
            mqtt_c_call_message(cb, msg.topic, msg.payload);
            if bracket {
                (*p).end_delivery(pid);
            } else if (*p).store.is_some() {
                let _ = (*p).sync_changes(false);
            }
        }
        Event::Published { mid, rc } => {
            let cb = (*p).cbs[CB_PUBLISH];
            mqtt_c_call_ints(cb, 2, mid as mp_int_t, rc as mp_int_t);
        }
        Event::Subscribed { mid, granted } => {
            let cb = (*p).cbs[CB_SUBSCRIBE];
            mqtt_c_call_subscribe(cb, mid as mp_int_t, granted.as_ptr(), granted.len());
        }
        Event::Unsubscribed { mid } => {
            let cb = (*p).cbs[CB_UNSUBSCRIBE];
            mqtt_c_call_ints(cb, 1, mid as mp_int_t, 0);
        }
    }
}
