/* What tells the agent that its node changed, so it rediscovers at once
 * instead of polling: rtnetlink link notifications (RTNLGRP_LINK) from a
 * socket made inside the node's netns (a pod's host veth appears or
 * vanishes there, and so does its peer when the pod's netns goes), and
 * inotify on the node's kubepods cgroup directories (a pod or container
 * cgroup made or removed, a process written into cgroup.procs, the
 * populated state in cgroup.events changing). */
#ifndef SONDE_NODEWATCH_H
#define SONDE_NODEWATCH_H

#include <stdint.h>

struct nodewatch;

struct nodewatch_stats {
	uint64_t link_events;	/* RTM_NEWLINK / RTM_DELLINK */
	uint64_t cgroup_events; /* inotify events on kubepods directories */
	uint64_t overruns;	/* netlink ENOBUFS or inotify overflow */
	uint32_t cgroup_watches;
};

/* Either source may fail alone (logged); NULL only when both fail. */
struct nodewatch *nodewatch_open(const char *netns_path,
				 const char *cgroup_root);
/* One fd (an epoll set of both sources) for the caller's epoll loop. */
int nodewatch_fd(const struct nodewatch *w);
/* Reads everything pending; returns how many events may mean a change of
 * the node's pods (0: nothing worth a rediscovery). */
int nodewatch_read(struct nodewatch *w);
void nodewatch_stats(const struct nodewatch *w, struct nodewatch_stats *st);
void nodewatch_close(struct nodewatch *w);

#endif
