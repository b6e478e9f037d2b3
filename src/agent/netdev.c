/* Network devices of a namespace from one rtnetlink dump (libmnl): the
 * kinds (veth, bridge, vxlan), masters, veth peers and VXLAN lower devices
 * that full-stack topology joins pods' eth0 to the node's uplink with. */
#include "agent/netdev.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct dump_ctx {
	struct netdev *devs;
	size_t n, cap;
};

static int linkinfo_attr(const struct nlattr *a, void *data)
{
	struct netdev *d = data;
	if (mnl_attr_get_type(a) == IFLA_INFO_KIND)
		snprintf(d->kind, sizeof(d->kind), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int vxlan_attr(const struct nlattr *a, void *data)
{
	struct netdev *d = data;
	switch (mnl_attr_get_type(a)) {
	case IFLA_VXLAN_ID:
		d->vni = mnl_attr_get_u32(a);
		break;
	case IFLA_VXLAN_LINK:
		d->link = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_VXLAN_PORT:
		d->port = ntohs(mnl_attr_get_u16(a));
		break;
	}
	return MNL_CB_OK;
}

static int link_attr(const struct nlattr *a, void *data)
{
	struct netdev *d = data;
	switch (mnl_attr_get_type(a)) {
	case IFLA_IFNAME:
		snprintf(d->name, sizeof(d->name), "%s", mnl_attr_get_str(a));
		break;
	case IFLA_MASTER:
		d->master = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_LINK:
		/* veth: the peer's ifindex (in the peer's namespace). */
		if (!d->link)
			d->link = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_LINK_NETNSID:
		d->link_netnsid = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_MTU:
		d->mtu = mnl_attr_get_u32(a);
		break;
	case IFLA_LINKINFO: {
		const struct nlattr *n;
		mnl_attr_parse_nested(a, linkinfo_attr, d);
		mnl_attr_for_each_nested(n, a)
			if (mnl_attr_get_type(n) == IFLA_INFO_DATA &&
			    !strcmp(d->kind, "vxlan"))
				mnl_attr_parse_nested(n, vxlan_attr, d);
		break;
	}
	}
	return MNL_CB_OK;
}

static int link_msg(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *ctx = data;
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap ? ctx->cap * 2 : 32;
		struct netdev *n = realloc(ctx->devs, ctx->cap * sizeof(*n));
		if (!n)
			return MNL_CB_ERROR;
		ctx->devs = n;
	}
	struct netdev *d = &ctx->devs[ctx->n++];
	memset(d, 0, sizeof(*d));
	d->ifindex = ifi->ifi_index;
	d->link_netnsid = -1;
	d->up = (ifi->ifi_flags & IFF_UP) != 0;
	mnl_attr_parse(nlh, sizeof(*ifi), link_attr, d);
	/* A veth's IFLA_LINK is its peer; for the loopback and plain
	 * devices it is the device itself. */
	if (d->link == d->ifindex && strcmp(d->kind, "vxlan"))
		d->link = 0;
	return MNL_CB_OK;
}

/* The socket is created in the target namespace (a netlink socket stays in
 * the namespace it was made in), then the thread returns to its own. */
static struct mnl_socket *socket_in(const char *netns_path)
{
	int self = -1, target = -1;
	struct mnl_socket *nl = NULL;

	if (netns_path) {
		self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(netns_path, O_RDONLY | O_CLOEXEC);
		if (self < 0 || target < 0 || setns(target, CLONE_NEWNET))
			goto out;
	}
	nl = mnl_socket_open(NETLINK_ROUTE);
	if (netns_path && setns(self, CLONE_NEWNET)) {
		/* Cannot return to our own namespace: refuse to go on. */
		abort();
	}
out:
	if (self >= 0)
		close(self);
	if (target >= 0)
		close(target);
	return nl;
}

struct mnl_socket *netdev_socket_in(const char *netns_path)
{
	return socket_in(netns_path);
}

int netdev_list(const char *netns_path, struct netdev **out, size_t *count)
{
	struct dump_ctx ctx = { 0 };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl = socket_in(netns_path);
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!nl)
		return -errno ? -errno : -EIO;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		goto done;
	}
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = (unsigned)time(NULL);
	struct rtgenmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
	rt->rtgen_family = AF_PACKET;
	unsigned portid = mnl_socket_get_portid(nl), seq = nlh->nlmsg_seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		goto done;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0) {
			rc = -errno;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, seq, portid, link_msg, &ctx);
		if (r == MNL_CB_STOP)
			break;
		if (r < 0) {
			rc = -errno ? -errno : -EIO;
			break;
		}
	}
done:
	mnl_socket_close(nl);
	if (rc) {
		free(ctx.devs);
		return rc;
	}
	*out = ctx.devs;
	*count = ctx.n;
	return 0;
}

const struct netdev *netdev_by_index(const struct netdev *devs, size_t n,
				     int ifindex)
{
	for (size_t i = 0; i < n; i++)
		if (devs[i].ifindex == ifindex)
			return &devs[i];
	return NULL;
}

const struct netdev *netdev_by_name(const struct netdev *devs, size_t n,
				    const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(devs[i].name, name))
			return &devs[i];
	return NULL;
}
