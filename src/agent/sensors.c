/* The sensor families compiled into this agent, in start order. A new family
 * adds one line here and one extern in its own header. */
#include "agent/sensor.h"

extern const struct sensor_family flow_family;
extern const struct sensor_family l7_family;
extern const struct sensor_family latency_family;

const struct sensor_family *const sensor_families[] = {
	&flow_family,
	&l7_family,
	&latency_family,
	NULL,
};
