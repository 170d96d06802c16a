/* Loaded into the test browser with LD_PRELOAD (webui_page.chromium).
 *
 * Chromium watches the host's network interfaces through a NETLINK_ROUTE socket
 * (net::AddressTrackerLinux) and drops the requests in flight, with ERR_NETWORK_CHANGED, whenever any
 * interface gains or loses an address. The test workers beside the browser create Docker networks,
 * each a new bridge on the host, so a browser test failed at a random step in fresh-machine runs.
 * Refused that one socket, Chromium takes its own fallback ("assume online, watch nothing"); every
 * other socket is the real one. Users' browsers are not concerned: their pages do not share a host
 * with a test suite creating networks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <sys/socket.h>

static int (*real_socket)(int, int, int);

/* Resolved once, before any thread of the program runs. */
__attribute__((constructor)) static void find_real_socket(void) {
    real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    if (!real_socket) abort();
}

int socket(int domain, int type, int protocol) {
    if (domain == AF_NETLINK && protocol == NETLINK_ROUTE) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return real_socket(domain, type, protocol);
}
