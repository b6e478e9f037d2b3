/* Network devices of one network namespace (rtnetlink link dump): what node
 * discovery needs to place a pod's veth, the bridge it is enslaved to, the
 * VXLAN device and the uplink under it. */
#ifndef SONDE_NETDEV_H
#define SONDE_NETDEV_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct netdev {
	int ifindex;
	char name[IFNAMSIZ];
	char kind[16];	   /* "veth", "bridge", "vxlan", "" (physical/other) */
	int master;	   /* ifindex of the bridge it is enslaved to, 0 none */
	int link;	   /* veth: peer ifindex (in the peer's netns);
			      vxlan: the lower (uplink) device; 0 none */
	int link_netnsid;  /* netns id of the veth peer, -1 same/unknown */
	uint32_t vni;	   /* vxlan */
	uint16_t port;	   /* vxlan UDP port */
	uint32_t mtu;
	bool up;
};

struct mnl_socket;

/* A NETLINK_ROUTE socket made inside the netns at netns_path (NULL: the
 * caller's); it stays bound to that netns. NULL with errno on failure. */
struct mnl_socket *netdev_socket_in(const char *netns_path);

/* Dumps the links of the netns at netns_path (NULL: the caller's). */
int netdev_list(const char *netns_path, struct netdev **out, size_t *count);
const struct netdev *netdev_by_index(const struct netdev *devs, size_t n,
				     int ifindex);
const struct netdev *netdev_by_name(const struct netdev *devs, size_t n,
				    const char *name);

#endif
