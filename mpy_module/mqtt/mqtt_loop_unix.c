/*
 * The event loop of the `mqtt` module on unix-like ports with threads (the
 * host stand-in for the DL-7450).
 *
 * The Python thread waits for the clients itself wherever the module sees
 * the wait: time.sleep(), time.sleep_ms(), time.sleep_us() of a millisecond
 * or more (the variant routes them to mqtt_port_sleep_us()) and the loop
 * that runs the clients after the script. Such a wait is one poll() on the
 * clients' sockets with the exact deadline (next keep-alive, retry or
 * connect timeout); the pump runs on the Python thread as soon as a socket is
 * ready. No other thread is involved, and a quiet connection costs no CPU.
 *
 * For the waits the module cannot see (the REPL reading stdin, select or
 * asyncio polling other sockets, a long computation), a small waker thread
 * watches the same sockets and deadlines. When one is due it schedules the
 * pump (a static scheduler node, so it never touches MicroPython objects)
 * and interrupts the Python thread's blocking system call with a signal whose
 * handler does nothing. It stands aside while the Python thread waits itself.
 *
 * Ports without threads use mqtt_loop_bare.c instead.
 */
#define _GNU_SOURCE // ppoll()
#include <string.h>

#include "py/runtime.h"
#include "py/mphal.h"
#include "mqtt.h"

#if MICROPY_PY_MQTT

#if MICROPY_PY_THREAD && defined(__unix__)

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    bool used;
    bool armed;
    bool want_write;
    bool readable;      // poll() found the socket ready since the pump last asked
    uint64_t deadline;
} mqtt_slot_t;

static struct {
    pthread_mutex_t lock;
    pthread_t thread;
    pthread_t python_thread;
    bool started;
    bool kick;          // the pump is scheduled: interrupt the Python thread until it ran
    bool py_waiting;    // the Python thread waits for the clients itself
    bool waker_armed;   // the waker's poll() includes the clients' sockets
    int kick_ms;        // the interval to the next signal
    uint64_t kick_due;  // when the next signal goes out
    int wake_pipe[2];   // wakes the waker (new watch list)
    int main_pipe[2];   // wakes the Python thread's wait
    mqtt_slot_t slots[MQTT_MAX_CLIENTS];
} mqtt_loop = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake_pipe = { -1, -1 }, .main_pipe = { -1, -1 } };

static int mqtt_wake_signal(void) {
    #ifdef SIGRTMIN
    return SIGRTMIN + 6; // SIGRTMIN + 5 is MicroPython's GC signal
    #else
    return SIGUSR2;
    #endif
}

uint64_t mqtt_c_ticks_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void mqtt_pipe_poke(int fd) {
    if (fd >= 0) {
        char c = 1;
        ssize_t r = write(fd, &c, 1); // non-blocking; a full pipe already wakes
        (void)r;
    }
}

static void mqtt_pipe_drain(int fd) {
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void mqtt_nop_handler(int sig) {
    (void)sig;
}

// The armed clients' sockets, appended to pfd/owner from index n (owner: the
// slot, -1 for a pipe); their earliest deadline in *deadline. Lock held.
static size_t mqtt_watch_list(struct pollfd *pfd, int *owner, size_t n, uint64_t *deadline) {
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        mqtt_slot_t *s = &mqtt_loop.slots[i];
        if (!s->used || !s->armed) {
            continue;
        }
        if (s->deadline < *deadline) {
            *deadline = s->deadline;
        }
        if (s->fd >= 0) {
            pfd[n].fd = s->fd;
            pfd[n].events = POLLIN | (s->want_write ? POLLOUT : 0);
            owner[n++] = i;
        }
    }
    return n;
}

// Disarms, until the pump re-arms them, the slots whose socket poll() found
// ready or whose deadline has come; true when there is any. Lock held.
static bool mqtt_take_ready(const struct pollfd *pfd, const int *owner, size_t n, uint64_t now_ms) {
    bool fire = false;
    for (size_t k = 0; k < n; k++) {
        if (pfd[k].revents && owner[k] >= 0 && mqtt_loop.slots[owner[k]].armed) {
            mqtt_loop.slots[owner[k]].armed = false;
            __atomic_store_n(&mqtt_loop.slots[owner[k]].readable, true, __ATOMIC_RELEASE);
            fire = true;
        }
    }
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        mqtt_slot_t *s = &mqtt_loop.slots[i];
        if (s->used && s->armed && s->deadline <= now_ms) {
            s->armed = false;
            fire = true;
        }
    }
    return fire;
}

// Starts (or restarts) kicking the Python thread: the first signal after a
// grace period of 1-2 ms, then after 1, 2, 4, 8, 16 ms. Lock held.
static void mqtt_kick_start(void) {
    mqtt_loop.kick = true;
    mqtt_loop.kick_ms = 1;
    mqtt_loop.kick_due = mqtt_c_ticks_ms() + 2;
}

static void *mqtt_waker_main(void *arg) {
    (void)arg;
    // Only the Python thread takes the wake signal.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, mqtt_wake_signal());
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct pollfd pfd[MQTT_MAX_CLIENTS + 1];
    int owner[MQTT_MAX_CLIENTS + 1];
    for (;;) {
        size_t n = 0;
        pfd[n].fd = mqtt_loop.wake_pipe[0];
        pfd[n].events = POLLIN;
        owner[n++] = -1;
        uint64_t deadline = UINT64_MAX;
        pthread_mutex_lock(&mqtt_loop.lock);
        bool stand_aside = mqtt_loop.py_waiting;
        mqtt_loop.waker_armed = !stand_aside;
        if (stand_aside) {
            mqtt_loop.kick = false; // the Python thread runs the pump itself
        }
        if (!stand_aside) {
            n = mqtt_watch_list(pfd, owner, n, &deadline);
        }
        bool kick = mqtt_loop.kick;
        pthread_mutex_unlock(&mqtt_loop.lock);
        if (kick) {
            // The Python thread may be blocked in a system call it only leaves on
            // a signal (the REPL's read, select): send one, and again with a
            // growing delay (a signal can land just before the call blocks),
            // until the scheduled pump has run. The first waits a grace period:
            // a Python thread that runs Python code (a loop of publish() calls,
            // a computation) runs the pump by itself at its next branch, and
            // then no signal is needed at all.
            // Whether the pump ran is only looked at when a signal is due:
            // a script publishing in a loop requests the pump at every call,
            // and the waker, woken by the first request, then sleeps until
            // the grace period ends instead of being woken by every one.
            uint64_t now = mqtt_c_ticks_ms();
            pthread_mutex_lock(&mqtt_loop.lock);
            if (now < mqtt_loop.kick_due) {
                // still within the grace period or the interval
            } else if (!mqtt_pump_pending()) {
                // The pump ran, and may have re-armed a client without a poke
                // (mqtt_c_watch while kicking): build the list again.
                mqtt_loop.kick = false;
                pthread_mutex_unlock(&mqtt_loop.lock);
                continue;
            } else {
                mqtt_loop.kick_due = now + (uint64_t)mqtt_loop.kick_ms;
                if (mqtt_loop.kick_ms < 16) {
                    mqtt_loop.kick_ms *= 2;
                }
                pthread_kill(mqtt_loop.python_thread, mqtt_wake_signal());
            }
            if (mqtt_loop.kick && mqtt_loop.kick_due < deadline) {
                deadline = mqtt_loop.kick_due;
            }
            pthread_mutex_unlock(&mqtt_loop.lock);
        }
        int timeout = -1;
        if (deadline != UINT64_MAX) {
            uint64_t now = mqtt_c_ticks_ms();
            timeout = deadline <= now ? 0 : (deadline - now > 3600000u ? 3600000 : (int)(deadline - now));
        }
        int r = poll(pfd, n, timeout);
        if (r < 0) {
            continue; // EINTR: look again
        }
        if (pfd[0].revents) {
            mqtt_pipe_drain(mqtt_loop.wake_pipe[0]);
        }
        pthread_mutex_lock(&mqtt_loop.lock);
        if (mqtt_loop.py_waiting) {
            // The Python thread took over meanwhile: it sees the same events.
            pthread_mutex_unlock(&mqtt_loop.lock);
            continue;
        }
        bool fire = mqtt_take_ready(pfd, owner, n, mqtt_c_ticks_ms());
        pthread_mutex_unlock(&mqtt_loop.lock);
        if (fire) {
            mqtt_schedule_pump();
            pthread_mutex_lock(&mqtt_loop.lock);
            mqtt_kick_start();
            pthread_mutex_unlock(&mqtt_loop.lock);
        }
    }
    return NULL;
}

void mqtt_c_request_pump(void) {
    mqtt_schedule_pump();
    // Within the pump (a callback's publish) the pump itself goes on, and a
    // Python thread that waits for the clients runs it: no kick needed.
    if (!mqtt_loop.started || mqtt_c_pump_running() || mqtt_loop.py_waiting) {
        return;
    }
    // Called from the Python thread, which runs the scheduled pump at its
    // next branch; the waker only has to cover a blocking call that comes
    // first. It is woken once per burst of requests: while it is kicking it
    // sees every new request at its next check (the interval restarts at 1 ms).
    pthread_mutex_lock(&mqtt_loop.lock);
    bool was = mqtt_loop.kick;
    mqtt_kick_start();
    pthread_mutex_unlock(&mqtt_loop.lock);
    if (!was) {
        mqtt_pipe_poke(mqtt_loop.wake_pipe[1]);
    }
}

static bool mqtt_loop_start(void) {
    if (mqtt_loop.started) {
        return true;
    }
    for (int p = 0; p < 2; p++) {
        int *fds = p ? mqtt_loop.main_pipe : mqtt_loop.wake_pipe;
        if (pipe(fds) != 0) {
            return false;
        }
        for (int k = 0; k < 2; k++) {
            fcntl(fds[k], F_SETFL, fcntl(fds[k], F_GETFL) | O_NONBLOCK);
            fcntl(fds[k], F_SETFD, FD_CLOEXEC);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mqtt_nop_handler; // no SA_RESTART: blocking calls see EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(mqtt_wake_signal(), &sa, NULL);
    mqtt_loop.python_thread = pthread_self();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&mqtt_loop.thread, &attr, mqtt_waker_main, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        return false;
    }
    mqtt_loop.started = true;
    return true;
}

int mqtt_c_slot_alloc(void) {
    if (!mqtt_loop_start()) {
        return -1;
    }
    pthread_mutex_lock(&mqtt_loop.lock);
    int slot = -1;
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        if (!mqtt_loop.slots[i].used) {
            mqtt_loop.slots[i] = (mqtt_slot_t) { .fd = -1, .used = true, .armed = false, .readable = true, .deadline = UINT64_MAX };
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&mqtt_loop.lock);
    return slot;
}

void mqtt_c_watch(int slot, int fd, bool want_write, uint64_t deadline_ms) {
    if (slot < 0 || slot >= MQTT_MAX_CLIENTS) {
        return;
    }
    pthread_mutex_lock(&mqtt_loop.lock);
    mqtt_slot_t *s = &mqtt_loop.slots[slot];
    // A later deadline needs no wake-up: the waker wakes at the earlier one,
    // finds nothing due and sleeps again.
    bool changed = !s->armed || s->fd != fd || s->want_write != want_write || deadline_ms < s->deadline;
    s->fd = fd;
    s->want_write = want_write;
    s->deadline = deadline_ms;
    s->armed = true;
    // The waker polls the old list until it is woken (while it kicks, up to
    // the end of the grace period): a client re-armed after a burst wakes it.
    changed = changed && mqtt_loop.waker_armed;
    pthread_mutex_unlock(&mqtt_loop.lock);
    if (changed) {
        mqtt_pipe_poke(mqtt_loop.wake_pipe[1]);
    }
}

bool mqtt_c_take_readable(int slot) {
    if (slot < 0 || slot >= MQTT_MAX_CLIENTS) {
        return true;
    }
    return __atomic_exchange_n(&mqtt_loop.slots[slot].readable, false, __ATOMIC_ACQ_REL);
}

void mqtt_c_sock_quickack(int fd) {
    #ifdef TCP_QUICKACK
    // Linux leaves quick-ACK mode again by itself, so it is asked after each read.
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    #else
    (void)fd;
    #endif
}

void mqtt_c_unwatch(int slot) {
    if (slot < 0 || slot >= MQTT_MAX_CLIENTS) {
        return;
    }
    pthread_mutex_lock(&mqtt_loop.lock);
    mqtt_loop.slots[slot].armed = false;
    mqtt_loop.slots[slot].fd = -1;
    pthread_mutex_unlock(&mqtt_loop.lock);
    mqtt_pipe_poke(mqtt_loop.wake_pipe[1]);
}

void mqtt_c_slot_free(int slot) {
    if (slot < 0 || slot >= MQTT_MAX_CLIENTS) {
        return;
    }
    pthread_mutex_lock(&mqtt_loop.lock);
    mqtt_loop.slots[slot].used = false;
    mqtt_loop.slots[slot].armed = false;
    mqtt_loop.slots[slot].fd = -1;
    pthread_mutex_unlock(&mqtt_loop.lock);
    mqtt_pipe_poke(mqtt_loop.wake_pipe[1]);
}

uint64_t mqtt_next_deadline_ms(void) {
    uint64_t next = UINT64_MAX;
    pthread_mutex_lock(&mqtt_loop.lock);
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        mqtt_slot_t *s = &mqtt_loop.slots[i];
        if (s->used && s->armed && s->deadline < next) {
            next = s->deadline;
        }
    }
    pthread_mutex_unlock(&mqtt_loop.lock);
    return next;
}

void mqtt_poll_isr(void) {
    // The waker thread watches the deadlines.
}

static uint64_t mqtt_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

// The waker stands aside (py_waiting) or takes over again.
static void mqtt_python_waits(bool waiting) {
    pthread_mutex_lock(&mqtt_loop.lock);
    mqtt_loop.py_waiting = waiting;
    bool poke = waiting ? mqtt_loop.waker_armed : !mqtt_loop.waker_armed;
    pthread_mutex_unlock(&mqtt_loop.lock);
    if (poke && mqtt_loop.started) {
        mqtt_pipe_poke(mqtt_loop.wake_pipe[1]);
    }
}

// One round of the Python thread's wait: poll() the clients' sockets until
// `end_us` or the next client deadline; schedule the pump for what is ready.
static void mqtt_python_poll(uint64_t end_us) {
    struct pollfd pfd[MQTT_MAX_CLIENTS + 1];
    int owner[MQTT_MAX_CLIENTS + 1];
    size_t n = 0;
    if (mqtt_loop.started) {
        pfd[n].fd = mqtt_loop.main_pipe[0];
        pfd[n].events = POLLIN;
        owner[n++] = -1;
    }
    uint64_t deadline_ms = UINT64_MAX;
    pthread_mutex_lock(&mqtt_loop.lock);
    n = mqtt_watch_list(pfd, owner, n, &deadline_ms);
    pthread_mutex_unlock(&mqtt_loop.lock);
    uint64_t now = mqtt_now_us();
    uint64_t wake = end_us;
    if (deadline_ms != UINT64_MAX && deadline_ms * 1000u < wake) {
        wake = deadline_ms * 1000u;
    }
    uint64_t wait_us = wake <= now ? 0 : wake - now;
    if (wait_us > 3600000000u) {
        wait_us = 3600000000u;
    }
    struct timespec ts = { .tv_sec = wait_us / 1000000u, .tv_nsec = (wait_us % 1000000u) * 1000u };
    int r = 0;
    if (!mqtt_pump_pending()) {
        MP_THREAD_GIL_EXIT();
        r = ppoll(pfd, n, &ts, NULL);
        MP_THREAD_GIL_ENTER();
    }
    if (r > 0 && n > 0 && owner[0] < 0 && pfd[0].revents) {
        mqtt_pipe_drain(mqtt_loop.main_pipe[0]);
    }
    if (r <= 0) {
        for (size_t k = 0; k < n; k++) {
            pfd[k].revents = 0; // a timeout or a signal: only deadlines count
        }
    }
    pthread_mutex_lock(&mqtt_loop.lock);
    bool fire = mqtt_take_ready(pfd, owner, n, mqtt_c_ticks_ms());
    pthread_mutex_unlock(&mqtt_loop.lock);
    if (fire) {
        mqtt_schedule_pump();
    }
}

// Waits for `us` microseconds (UINT64_MAX with `until_idle`: until no client
// is active), running scheduled callbacks and the clients meanwhile. A
// pending exception (Ctrl-C, sys.exit() from a callback) is raised from here.
static void mqtt_python_wait(uint64_t us, bool until_idle) {
    uint64_t end = us == UINT64_MAX ? UINT64_MAX : mqtt_now_us() + us;
    mqtt_python_waits(true);
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        for (;;) {
            mp_handle_pending(true);
            if (until_idle ? !mqtt_any_active() : mqtt_now_us() >= end) {
                break;
            }
            mqtt_python_poll(end);
        }
        nlr_pop();
        mqtt_python_waits(false);
    } else {
        mqtt_python_waits(false);
        nlr_jump(nlr.ret_val);
    }
}

void mqtt_port_sleep_us(uint64_t us) {
    mqtt_python_wait(us, false);
}

void mqtt_c_run_until_idle(void) {
    mqtt_python_wait(UINT64_MAX, true);
}

#endif

#endif // MICROPY_PY_MQTT
