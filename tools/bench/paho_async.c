/* Eclipse Paho C's asynchronous client (MQTTAsync, libpaho-mqtt-dev), the
 * library behind the published DL-7450 API, as a benchmark peer. Same modes
 * and output as the other clients (tools/bench/bench.py):
 *
 *   paho_async tp  HOST PORT TOPIC N QOS        publish N messages, window 20
 *   paho_async rtt HOST PORT TOPIC WARM N QOS   round trips, next from onMessage
 *
 * Prints "READY" once connected (and subscribed) and one "RESULT {json}" line.
 * Times are CLOCK_REALTIME ns (tp, comparable with the driver's) or
 * CLOCK_MONOTONIC differences (rtt).
 */
#include <MQTTAsync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 20

static MQTTAsync client;
static char payload[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; /* 32 bytes */
static const char *topic;
static int qos, n, warm;
static volatile int connected, subscribed, failed;
static volatile int sent, done, k;
static double *samples;
static struct timespec t_sent;

static long long now_ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void on_connect(void *ctx, MQTTAsync_successData *r) {
    (void)ctx; (void)r;
    connected = 1;
}

static void on_fail(void *ctx, MQTTAsync_failureData *r) {
    (void)ctx;
    fprintf(stderr, "paho_async: failed (%d)\n", r ? r->code : -1);
    failed = 1;
}

static void on_subscribe(void *ctx, MQTTAsync_successData *r) {
    (void)ctx; (void)r;
    subscribed = 1;
}

static void send_one(void);

static void on_sent(void *ctx, MQTTAsync_successData *r) {
    (void)ctx; (void)r;
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sent, __ATOMIC_SEQ_CST) < n) {
        send_one();
    }
}

static void send_one(void) {
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sent;
    ro.onFailure = on_fail;
    if (__atomic_fetch_add(&sent, 1, __ATOMIC_SEQ_CST) >= n) {
        return;
    }
    MQTTAsync_send(client, topic, 32, payload, qos, 0, &ro);
}

static void send_rtt(void) {
    clock_gettime(CLOCK_MONOTONIC, &t_sent);
    MQTTAsync_send(client, topic, 32, payload, qos, 0, NULL);
}

static int on_message(void *ctx, char *t, int tlen, MQTTAsync_message *m) {
    (void)ctx; (void)tlen;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = (t1.tv_sec - t_sent.tv_sec) * 1e6 + (t1.tv_nsec - t_sent.tv_nsec) / 1e3;
    if (samples != NULL && k >= warm && k - warm < n) {
        samples[k - warm] = us;
    }
    k++;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(t);
    if (samples != NULL && k < warm + n) {
        send_rtt();
    }
    return 1;
}

static void wait_for(volatile int *flag) {
    while (!*flag && !failed) {
        usleep(100);
    }
    if (failed) {
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: paho_async tp HOST PORT TOPIC N QOS | rtt HOST PORT TOPIC WARM N QOS\n");
        return 2;
    }
    const char *mode = argv[1];
    char uri[128];
    snprintf(uri, sizeof uri, "tcp://%s:%s", argv[2], argv[3]);
    topic = argv[4];
    int rtt = strcmp(mode, "rtt") == 0;
    if (rtt) {
        warm = atoi(argv[5]);
        n = atoi(argv[6]);
        qos = atoi(argv[7]);
    } else {
        n = atoi(argv[5]);
        qos = atoi(argv[6]);
    }
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 0;
    co.maxBufferedMessages = WINDOW;
    MQTTAsync_createWithOptions(&client, uri, rtt ? "bench-paho-c-rtt" : "bench-paho-c-tp",
                                MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    MQTTAsync_setCallbacks(client, NULL, NULL, on_message, NULL);
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    opts.keepAliveInterval = 60;
    opts.cleansession = 1;
    opts.maxInflight = WINDOW;
    opts.onSuccess = on_connect;
    opts.onFailure = on_fail;
    if (MQTTAsync_connect(client, &opts) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "paho_async: connect failed\n");
        return 1;
    }
    wait_for(&connected);
    if (rtt) {
        samples = calloc((size_t)n, sizeof *samples);
        MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
        so.onSuccess = on_subscribe;
        so.onFailure = on_fail;
        MQTTAsync_subscribe(client, topic, qos, &so);
        wait_for(&subscribed);
        printf("READY\n");
        fflush(stdout);
        send_rtt();
        while (k < warm + n && !failed) {
            usleep(1000);
        }
        printf("RESULT {\"rtt_us\": [");
        for (int i = 0; i < n; i++) {
            printf("%s%.1f", i ? ", " : "", samples[i]);
        }
        printf("]}\n");
    } else {
        printf("READY\n");
        fflush(stdout);
        long long t0 = now_ns(CLOCK_REALTIME);
        // The window: 20 sends, then one more from each completion.
        for (int i = 0; i < WINDOW && i < n; i++) {
            send_one();
        }
        while (done < n && !failed) {
            usleep(200);
        }
        long long t1 = now_ns(CLOCK_REALTIME);
        printf("RESULT {\"t0\": %lld, \"t1\": %lld}\n", t0, t1);
    }
    fflush(stdout);
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(client, &d);
    usleep(20000);
    MQTTAsync_destroy(&client);
    return 0;
}
