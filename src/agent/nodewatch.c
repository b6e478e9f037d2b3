/* Change notifications of a node (nodewatch.h): rtnetlink link events from
 * the node's netns and inotify on its kubepods cgroup tree. Only "something
 * changed" is reported: the agent then rediscovers the whole node, which is
 * cheap and cannot drift from the truth the way incremental updates can. */
#include "agent/nodewatch.h"
#include "agent/netdev.h"
#include "lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <limits.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

/* kubepods/<qos>/pod<uid>/<container>: deeper trees (systemd slices) fit. */
#define MAX_DEPTH 6

struct dirwatch {
	int wd;
	int depth; /* 0: the cgroup root */
	char *path;
};

struct nodewatch {
	int epfd;
	struct mnl_socket *nl;
	int ifd;
	char root[PATH_MAX];
	struct dirwatch *dirs;
	size_t ndirs, cap;
	struct nodewatch_stats st;
};

/* The root only for its kubepods children appearing or going (on a real
 * node the root is the whole cgroup mount: its other cgroups are not
 * ours); below, every directory also for writes to its files: a pid
 * written into cgroup.procs, cgroup.events' "populated" flipping. */
#define ROOT_MASK (IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_ONLYDIR)
#define TREE_MASK (ROOT_MASK | IN_MODIFY)

static struct dirwatch *find_wd(struct nodewatch *w, int wd)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static void add_tree(struct nodewatch *w, const char *path, int depth)
{
	int wd = inotify_add_watch(w->ifd, path, depth ? TREE_MASK : ROOT_MASK);
	if (wd < 0) {
		if (errno != ENOENT) /* ENOENT: removed meanwhile */
			log_warn("nodewatch: cannot watch %s: %s", path,
				 strerror(errno));
		return;
	}
	if (!find_wd(w, wd)) {
		if (w->ndirs == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 64;
			struct dirwatch *d = realloc(w->dirs, cap * sizeof(*d));
			if (!d)
				return;
			w->dirs = d;
			w->cap = cap;
		}
		char *copy = strdup(path);
		if (!copy)
			return;
		w->dirs[w->ndirs++] = (struct dirwatch){ wd, depth, copy };
	}
	if (depth >= MAX_DEPTH)
		return;
	/* Watched before listed: a directory made between the two is seen
	 * either by the listing or by the watch. */
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		if (!depth && strncmp(e->d_name, "kubepods", 8))
			continue;
		char child[PATH_MAX];
		if (snprintf(child, sizeof(child), "%s/%s", path, e->d_name) >=
		    (int)sizeof(child))
			continue;
		add_tree(w, child, depth + 1);
	}
	closedir(d);
}

static void forget_wd(struct nodewatch *w, int wd)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (w->dirs[i].wd == wd) {
			free(w->dirs[i].path);
			w->dirs[i] = w->dirs[--w->ndirs];
			return;
		}
}

static int open_netlink(struct nodewatch *w, const char *netns_path)
{
	w->nl = netdev_socket_in(netns_path);
	if (!w->nl || mnl_socket_bind(w->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
		log_warn("nodewatch: no link notifications from %s: %s "
			 "(rediscovery by timer only)",
			 netns_path, strerror(errno));
		if (w->nl)
			mnl_socket_close(w->nl);
		w->nl = NULL;
		return -1;
	}
	int fd = mnl_socket_get_fd(w->nl);
	/* A burst (many pods at once) must not overrun the socket; an
	 * overrun is still handled (ENOBUFS: rediscover). */
	int rcvbuf = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN };
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int open_inotify(struct nodewatch *w, const char *cgroup_root)
{
	snprintf(w->root, sizeof(w->root), "%s", cgroup_root);
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		log_warn("nodewatch: inotify: %s", strerror(errno));
		return -1;
	}
	add_tree(w, cgroup_root, 0);
	if (!w->ndirs) {
		log_warn("nodewatch: cannot watch the cgroup root %s "
			 "(rediscovery by timer only)", cgroup_root);
		close(w->ifd);
		w->ifd = -1;
		return -1;
	}
	struct epoll_event ev = { .events = EPOLLIN };
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ifd, &ev);
}

struct nodewatch *nodewatch_open(const char *netns_path,
				 const char *cgroup_root)
{
	struct nodewatch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->ifd = -1;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		free(w);
		return NULL;
	}
	int nl = open_netlink(w, netns_path);
	int in = open_inotify(w, cgroup_root);
	if (nl && in) {
		nodewatch_close(w);
		return NULL;
	}
	log_info("nodewatch: link notifications from %s%s, %zu cgroup "
		 "directories watched under %s",
		 netns_path, w->nl ? "" : " unavailable", w->ndirs, cgroup_root);
	return w;
}

int nodewatch_fd(const struct nodewatch *w)
{
	return w->epfd;
}

static int link_msg(const struct nlmsghdr *nlh, void *data)
{
	int *n = data;
	if (nlh->nlmsg_type == RTM_NEWLINK || nlh->nlmsg_type == RTM_DELLINK) {
		const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
		log_debug("nodewatch: %s ifindex %d",
			  nlh->nlmsg_type == RTM_NEWLINK ? "NEWLINK" : "DELLINK",
			  ifi->ifi_index);
		(*n)++;
	}
	return MNL_CB_OK;
}

static int read_netlink(struct nodewatch *w)
{
	char buf[MNL_SOCKET_BUFFER_SIZE] __attribute__((aligned(8)));
	int n = 0;

	if (!w->nl)
		return 0;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(w->nl, buf, sizeof(buf));
		if (len < 0) {
			if (errno == ENOBUFS) {
				/* Events were lost: whatever they were, a
				 * rediscovery catches up. */
				w->st.overruns++;
				n++;
				continue;
			}
			break; /* EAGAIN: drained */
		}
		mnl_cb_run(buf, (size_t)len, 0, 0, link_msg, &n);
	}
	w->st.link_events += (uint64_t)n;
	return n;
}

static int read_inotify(struct nodewatch *w)
{
	char buf[8192] __attribute__((aligned(8)));
	int n = 0;
	ssize_t len;

	if (w->ifd < 0)
		return 0;
	while ((len = read(w->ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + len;) {
			struct inotify_event *ev = (void *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				w->st.overruns++;
				n++;
				/* Directories made during the overflow have
				 * no watch yet. */
				add_tree(w, w->root, 0);
				continue;
			}
			if (ev->mask & IN_IGNORED) {
				forget_wd(w, ev->wd); /* its cgroup is gone */
				continue;
			}
			struct dirwatch *d = find_wd(w, ev->wd);
			if (!d)
				continue;
			if (!d->depth && ev->len && strncmp(ev->name, "kubepods", 8))
				continue; /* not a pods' cgroup */
			n++;
			if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
			    (ev->mask & IN_ISDIR) && ev->len) {
				char child[PATH_MAX];
				int depth = d->depth + 1;
				if (snprintf(child, sizeof(child), "%s/%s", d->path,
					     ev->name) < (int)sizeof(child))
					add_tree(w, child, depth);
			}
		}
	}
	w->st.cgroup_events += (uint64_t)n;
	return n;
}

int nodewatch_read(struct nodewatch *w)
{
	return read_netlink(w) + read_inotify(w);
}

void nodewatch_stats(const struct nodewatch *w, struct nodewatch_stats *st)
{
	*st = w->st;
	st->cgroup_watches = (uint32_t)w->ndirs;
}

void nodewatch_close(struct nodewatch *w)
{
	if (!w)
		return;
	if (w->nl)
		mnl_socket_close(w->nl);
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->epfd >= 0)
		close(w->epfd);
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i].path);
	free(w->dirs);
	free(w);
}
