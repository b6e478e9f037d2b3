/* `sonde query latency --offsets`: the clock offset between two nodes,
 * estimated from the one-way latency records of both directions.
 *
 * A one-way figure A -> B is (B's receive clock) - (A's send clock) =
 * delay(A -> B) + offset, where offset = B's clock - A's clock. The other
 * direction gives delay(B -> A) - offset. Delays are never negative, so
 * with m_ab and m_ba the smallest figures of each direction:
 *     -m_ba <= offset <= m_ab            (always true)
 *     offset ~ (m_ab - m_ba) / 2         (if the minimal delays are equal)
 * with an uncertainty of (m_ab + m_ba) / 2 around the estimate. A path
 * slower one way than the other (a queue, a delayed uplink) shifts the
 * estimate by half the difference: from one-way stamps alone an offset
 * and an asymmetry cannot be told apart. */
#ifndef SONDE_CLI_OFFSETS_H
#define SONDE_CLI_OFFSETS_H

#include <jansson.h>
#include <stdio.h>

/* From latency records (JSON lines, as GET /v1/records returns them):
 * {"pairs": [one object per pair of nodes, node_a < node_b, with
 * "offset_ns" = node_b's clock - node_a's, or null when a direction has no
 * record]}. Records without both node names, or within one node, are
 * skipped. Fields: docs/latency.md. */
json_t *latency_offsets(const char *jsonl);

/* The table `sonde query latency --offsets` prints. */
void latency_offsets_print(const json_t *doc, FILE *out);

#endif
