/* LD_PRELOAD shim for load tests: binds every IPv4/IPv6 TCP connect() to the next source
 * address of FG_SOURCES (comma separated), round robin, so that one wrk process floods from
 * many addresses. Test use only; addresses come from the test's own namespace. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SOURCES 1024

static struct sockaddr_storage sources[MAX_SOURCES];
static int source_count;
static unsigned next_source;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int (*real_connect)(int, const struct sockaddr *, socklen_t);

static void load(void) {
    real_connect = dlsym(RTLD_NEXT, "connect");
    const char *env = getenv("FG_SOURCES");
    if (!env) return;
    char *copy = strdup(env), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && source_count < MAX_SOURCES; tok = strtok_r(NULL, ",", &save)) {
        struct sockaddr_storage *ss = &sources[source_count];
        memset(ss, 0, sizeof(*ss));
        struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, tok, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            source_count++;
        } else if (inet_pton(AF_INET6, tok, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            source_count++;
        }
    }
    free(copy);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    pthread_once(&once, load);
    if (source_count > 0 && addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        for (int tries = 0; tries < source_count; tries++) {
            struct sockaddr_storage *src = &sources[__atomic_fetch_add(&next_source, 1, __ATOMIC_RELAXED) % source_count];
            if (src->ss_family != addr->sa_family) continue;
            socklen_t slen = src->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
            bind(fd, (struct sockaddr *)src, slen);
            break;
        }
    }
    return real_connect(fd, addr, len);
}
