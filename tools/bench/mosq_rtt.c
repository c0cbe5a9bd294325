/* Round-trip latency of libmosquitto (the C reference), event driven like the
 * other clients: subscribe to TOPIC, publish one message, publish the next one
 * from on_message. TCP_NODELAY on. Prints "READY" and "RESULT {"rtt_us":[...]}".
 * Built by tools/bench/run.sh against the system's libmosquitto.so.1 (the
 * headers, libmosquitto-dev, are not needed: the few declarations are below).
 * Usage: mosq_rtt HOST PORT TOPIC WARM N QOS
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct mosquitto;
struct mosquitto_message {
    int mid;
    char *topic;
    void *payload;
    int payloadlen;
    int qos;
    bool retain;
};
int mosquitto_lib_init(void);
struct mosquitto *mosquitto_new(const char *id, bool clean_session, void *obj);
int mosquitto_int_option(struct mosquitto *mosq, int option, int value);
int mosquitto_connect(struct mosquitto *mosq, const char *host, int port, int keepalive);
int mosquitto_subscribe(struct mosquitto *mosq, int *mid, const char *sub, int qos);
int mosquitto_publish(struct mosquitto *mosq, int *mid, const char *topic, int payloadlen,
                      const void *payload, int qos, bool retain);
int mosquitto_disconnect(struct mosquitto *mosq);
int mosquitto_loop_forever(struct mosquitto *mosq, int timeout, int max_packets);
void mosquitto_subscribe_callback_set(struct mosquitto *mosq,
    void (*cb)(struct mosquitto *, void *, int, int, const int *));
void mosquitto_message_callback_set(struct mosquitto *mosq,
    void (*cb)(struct mosquitto *, void *, const struct mosquitto_message *));
#define MOSQ_OPT_TCP_NODELAY 11

static const char payload[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; /* 32 bytes */
static const char *topic;
static int warm, n, qos, k;
static double *samples;
static struct timespec t_sent;

static double since_us(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1e6 + (t1.tv_nsec - t0->tv_nsec) / 1e3;
}

static void send_one(struct mosquitto *m) {
    clock_gettime(CLOCK_MONOTONIC, &t_sent);
    mosquitto_publish(m, NULL, topic, 32, payload, qos, false);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted) {
    (void)obj; (void)mid; (void)count; (void)granted;
    printf("READY\n");
    fflush(stdout);
    send_one(m);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)obj; (void)msg;
    double us = since_us(&t_sent);
    if (k >= warm) samples[k - warm] = us;
    k++;
    if (k < warm + n) send_one(m);
    else mosquitto_disconnect(m);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: mosq_rtt HOST PORT TOPIC WARM N QOS\n");
        return 2;
    }
    topic = argv[3];
    warm = atoi(argv[4]);
    n = atoi(argv[5]);
    qos = atoi(argv[6]);
    samples = calloc((size_t)n, sizeof *samples);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new("bench-libmosquitto-rtt", true, NULL);
    if (!m || !samples) return 1;
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, argv[1], atoi(argv[2]), 60) != 0) {
        fprintf(stderr, "mosq_rtt: connect failed\n");
        return 1;
    }
    mosquitto_subscribe(m, NULL, topic, qos);
    mosquitto_loop_forever(m, 1000, 1);
    printf("RESULT {\"rtt_us\": [");
    for (int i = 0; i < n; i++) printf("%s%.1f", i ? ", " : "", samples[i]);
    printf("]}\n");
    return 0;
}
