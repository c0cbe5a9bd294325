//! What a lost connection means for the reconnect schedule, and for the request the broker
//! may have closed it on. Pure rules over numbers the engine keeps; the engine calls them
//! when an established connection ends.
//!
//! - **Short-lived connection**: one that ends less than [`short_lived_ms`] after its
//!   CONNACK, i.e. min(keep-alive, 10 s), or 10 s without keep-alive.
//! - **Backoff**: the retry schedule (`RETRY_SCHEDULE_MS`: 1, 2, 4 … 60 s) starts again
//!   from its first step only when the lost connection was not short-lived, or when the
//!   broker completed one of the client's requests on it (PUBACK, PUBCOMP, SUBACK or
//!   UNSUBACK). Any other loss counts as one more failed attempt, so a broker that accepts
//!   and then drops at once is retried at 1, 2, 4 … 60 s.
//! - **Poison**: a loss *blames* a request when the connection ended through the broker
//!   (closed or reset: not a keep-alive timeout or an error found by the client), the
//!   oldest packet written on it that was still unacknowledged is that request's PUBLISH
//!   (QoS 1/2), SUBSCRIBE or UNSUBSCRIBE, nothing written after it was acknowledged (a
//!   PINGRESP counts), and the loss came less than [`short_lived_ms`] after it was
//!   written. When `Config::poison_retries` losses in a row blame the same request, the
//!   client gives it up (`rc::MESSAGE_REFUSED`). A loss that blames nothing, or blames
//!   another request, starts the count again, and so does an acknowledgement of the blamed
//!   request. A PUBREL is never blamed: after PUBREC the broker holds the QoS 2 message,
//!   and its PUBREL is re-sent until PUBCOMP.
//! - **One at a time**: a broker that closes (resets) the connection on a packet may drop
//!   the acknowledgements it had not sent yet for the packets before it, which then look
//!   unacknowledged too. So after a loss that blamed a request, the next connection writes
//!   one request at a time (the next only once the previous one is acknowledged): the
//!   blame then falls on the refused packet alone, and a blamed request that was innocent
//!   is acknowledged and cleared. Connections after a loss that blamed nothing pipeline
//!   within the in-flight window as usual.

/// Upper bound of the short-lived window (ms).
pub const SHORT_LIVED_MAX_MS: u64 = 10_000;

/// The short-lived window for a keep-alive interval (ms, 0 = keep-alive off).
pub fn short_lived_ms(keep_alive_ms: u64) -> u64 {
    if keep_alive_ms == 0 {
        SHORT_LIVED_MAX_MS
    } else {
        keep_alive_ms.min(SHORT_LIVED_MAX_MS)
    }
}

/// Whether the schedule starts again after a connection that was up `up_ms` and on which
/// `completed` is true when the broker completed a request.
pub fn restarts_schedule(up_ms: u64, keep_alive_ms: u64, completed: bool) -> bool {
    completed || up_ms >= short_lived_ms(keep_alive_ms)
}

/// Consecutive losses blaming the same request.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct PoisonWatch {
    /// mid of the request blamed by the last loss (0: none).
    mid: u32,
    count: u8,
}

impl PoisonWatch {
    pub const fn new() -> Self {
        PoisonWatch { mid: 0, count: 0 }
    }

    /// A connection ended; `blamed` is the mid of the request it blames, if any. True when
    /// that request must be given up now (`limit` losses in a row; 0 = never).
    pub fn loss(&mut self, blamed: Option<u32>, limit: u8) -> bool {
        match blamed {
            Some(mid) if mid != 0 => {
                if self.mid == mid {
                    self.count = self.count.saturating_add(1);
                } else {
                    self.mid = mid;
                    self.count = 1;
                }
                limit != 0 && self.count >= limit
            }
            _ => {
                self.clear();
                false
            }
        }
    }

    /// The request the last loss blamed, if it has not been cleared since.
    pub fn suspect(&self) -> Option<u32> {
        if self.mid != 0 {
            Some(self.mid)
        } else {
            None
        }
    }

    /// The count so far for `mid`.
    pub fn count_for(&self, mid: u32) -> u8 {
        if self.mid == mid {
            self.count
        } else {
            0
        }
    }

    pub fn clear(&mut self) {
        *self = PoisonWatch::new();
    }
}
