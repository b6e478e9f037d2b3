/* Pairwise clock offsets from latency records: see offsets.h for the
 * estimator and docs/latency.md for how far to trust it. */
#include "cli/offsets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Position floor(n/2) of the sorted values, as the other aggregates of
 * `sonde query` define a median. */
static json_t *median(const json_t *arr)
{
	size_t n = json_array_size(arr), i;
	json_t *v;

	if (!n)
		return json_null();
	int64_t *x = malloc(n * sizeof(*x));
	if (!x)
		return json_null();
	json_array_foreach(arr, i, v) x[i] = json_integer_value(v);
	qsort(x, n, sizeof(*x), cmp_i64);
	json_t *r = json_integer(x[n / 2]);
	free(x);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int64_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void iadd(json_t *o, const char *k, int64_t v)
{
	json_object_set_new(o, k, json_integer(iget(o, k) + v));
}

/* One direction's figures: records, samples, negative samples, the
 * smallest sample (exact: the kernel keeps each interval's min), the
 * median of the intervals' medians, the hops seen. */
static void dir_add(json_t *dirs, const char *from, const char *to,
		    const json_t *rec)
{
	char key[512];
	json_t *d, *min = json_object_get(rec, "min_ns");
	const char *hop = json_string_value(json_object_get(rec, "hop"));

	snprintf(key, sizeof(key), "%s\n%s", from, to);
	d = json_object_get(dirs, key);
	if (!d) {
		d = json_pack("{s:I,s:I,s:I,s:n,s:[],s:{}}", "records",
			      (json_int_t)0, "count", (json_int_t)0, "negative",
			      (json_int_t)0, "min_ns", "p50s", "hops");
		json_object_set_new(dirs, key, d);
	}
	iadd(d, "records", 1);
	iadd(d, "count", iget(rec, "count"));
	iadd(d, "negative", iget(rec, "negative"));
	if (json_is_integer(json_object_get(rec, "p50_ns")))
		json_array_append(json_object_get(d, "p50s"),
				  json_object_get(rec, "p50_ns"));
	if (hop)
		json_object_set_new(json_object_get(d, "hops"), hop, json_true());
	if (json_is_integer(min) &&
	    (json_is_null(json_object_get(d, "min_ns")) ||
	     json_integer_value(min) < iget(d, "min_ns")))
		json_object_set(d, "min_ns", min);
}

/* The direction as shown: the accumulator without its working arrays. */
static json_t *dir_out(const json_t *d, const json_t *offset, int sign)
{
	json_t *o, *hops, *p50;
	const char *k;
	json_t *v;

	if (!d)
		return json_null();
	hops = json_array();
	p50 = median(json_object_get(d, "p50s"));
	json_object_foreach((json_t *)json_object_get(d, "hops"), k, v)
		json_array_append_new(hops, json_string(k));
	o = json_pack("{s:O,s:O,s:O,s:O,s:o,s:o}", "records",
		      json_object_get(d, "records"), "count",
		      json_object_get(d, "count"), "negative",
		      json_object_get(d, "negative"), "min_ns",
		      json_object_get(d, "min_ns"), "p50_ns", p50, "hops", hops);
	/* The median with the estimated offset taken out: the figure the
	 * receiver would have measured with the sender's clock. */
	if (json_is_integer(offset) && json_is_integer(p50))
		json_object_set_new(o, "p50_corrected_ns",
				    json_integer(json_integer_value(p50) -
						 sign * json_integer_value(offset)));
	else
		json_object_set_new(o, "p50_corrected_ns", json_null());
	return o;
}

json_t *latency_offsets(const char *jsonl)
{
	json_t *dirs = json_object(), *clocks = json_object(), *pairs = json_object();
	json_t *rows = json_array();

	for (const char *p = jsonl ? jsonl : ""; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_t *o = json_loadb(p, len, 0, NULL);
		p += len + (nl ? 1 : 0);
		if (!o)
			continue;
		const char *kind = json_string_value(json_object_get(o, "kind"));
		const char *sn = json_string_value(json_object_get(o, "src_node"));
		const char *dn = json_string_value(json_object_get(o, "dst_node"));
		const char *node = json_string_value(json_object_get(o, "node"));
		json_t *clock = json_object_get(o, "clock");

		/* The receiving node's newest clock state. */
		if (node && json_is_object(clock)) {
			json_t *c = json_object_get(clocks, node);
			if (!c || iget(o, "time_ns") >= iget(c, "time_ns"))
				json_object_set_new(clocks, node,
						    json_pack("{s:O,s:O}", "time_ns",
							      json_object_get(o, "time_ns"),
							      "clock", clock));
		}
		if (kind && !strcmp(kind, "latency") && sn && dn && sn[0] &&
		    dn[0] && strcmp(sn, dn)) {
			dir_add(dirs, sn, dn, o);
			char key[512];
			int ab = strcmp(sn, dn) < 0;
			snprintf(key, sizeof(key), "%s\n%s", ab ? sn : dn,
				 ab ? dn : sn);
			json_object_set_new(pairs, key, json_true());
		}
		json_decref(o);
	}

	size_t n = json_object_size(pairs), i = 0;
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	const char *key;
	json_t *v;
	json_object_foreach(pairs, key, v) if (keys) keys[i++] = key;
	if (keys)
		qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; keys && i < n; i++) {
		char a[256], b[256], k2[512];
		const char *sep = strchr(keys[i], '\n');
		snprintf(a, sizeof(a), "%.*s", (int)(sep - keys[i]), keys[i]);
		snprintf(b, sizeof(b), "%s", sep + 1);
		json_t *ab = json_object_get(dirs, keys[i]);
		snprintf(k2, sizeof(k2), "%s\n%s", b, a);
		json_t *ba = json_object_get(dirs, k2);
		json_t *ca = json_object_get(json_object_get(clocks, a), "clock");
		json_t *cb = json_object_get(json_object_get(clocks, b), "clock");
		json_t *row = json_pack("{s:s,s:s}", "node_a", a, "node_b", b);
		json_t *off = json_null();

		if (ab && ba && json_is_integer(json_object_get(ab, "min_ns")) &&
		    json_is_integer(json_object_get(ba, "min_ns"))) {
			int64_t mab = iget(ab, "min_ns"), mba = iget(ba, "min_ns");
			off = json_integer((mab - mba) / 2);
			json_object_set(row, "offset_ns", off);
			json_object_set_new(row, "uncertainty_ns",
					    json_integer((mab + mba) / 2));
			json_object_set_new(row, "offset_low_ns", json_integer(-mba));
			json_object_set_new(row, "offset_high_ns", json_integer(mab));
		} else {
			json_object_set_new(row, "offset_ns", json_null());
			json_object_set_new(row, "uncertainty_ns", json_null());
			json_object_set_new(row, "offset_low_ns", json_null());
			json_object_set_new(row, "offset_high_ns", json_null());
		}
		json_object_set_new(row, "a_to_b", dir_out(ab, off, 1));
		json_object_set_new(row, "b_to_a", dir_out(ba, off, -1));
		json_object_set_new(row, "clock_a", ca ? json_incref(ca) : json_null());
		json_object_set_new(row, "clock_b", cb ? json_incref(cb) : json_null());
		/* adjtimex's bound on the pair: both nodes' maxerror. */
		if (ca && cb)
			json_object_set_new(row, "clock_error_ns",
					    json_integer(iget(ca, "maxerror_ns") +
							 iget(cb, "maxerror_ns")));
		else
			json_object_set_new(row, "clock_error_ns", json_null());
		json_decref(off);
		json_array_append_new(rows, row);
	}
	free(keys);
	json_decref(dirs);
	json_decref(clocks);
	json_decref(pairs);
	return json_pack("{s:o}", "pairs", rows);
}

/* Signed durations: "-2.00ms", "6.1us"; "-" for none. */
static void fmt_ns(char *out, size_t size, const json_t *v)
{
	if (!json_is_integer(v)) {
		snprintf(out, size, "-");
		return;
	}
	int64_t ns = json_integer_value(v);
	double a = (double)(ns < 0 ? -ns : ns);
	if (a >= 1e9)
		snprintf(out, size, "%.3fs", (double)ns / 1e9);
	else if (a >= 1e6)
		snprintf(out, size, "%.3fms", (double)ns / 1e6);
	else
		snprintf(out, size, "%.1fus", (double)ns / 1e3);
}

static void fmt_clock(char *out, size_t size, const json_t *c)
{
	char err[32];

	if (!json_is_object(c)) {
		snprintf(out, size, "-");
		return;
	}
	fmt_ns(err, sizeof(err), json_object_get(c, "maxerror_ns"));
	snprintf(out, size, "%s<=%s%s",
		 json_is_true(json_object_get(c, "synced")) ? "sync " : "UNSYNC ",
		 err, json_object_get(c, "test_skew_ns") ? " TEST-SKEW" : "");
}

void latency_offsets_print(const json_t *doc, FILE *out)
{
	json_t *r;
	size_t i;

	fprintf(out, "%-12s %-12s %11s %10s %10s %10s %10s %10s %-24s %-24s\n",
		"NODE A", "NODE B", "OFFSET B-A", "+-", "MIN A->B", "MIN B->A",
		"P50* A->B", "P50* B->A", "CLOCK A (adjtimex)",
		"CLOCK B (adjtimex)");
	json_array_foreach(json_object_get(doc, "pairs"), i, r)
	{
		json_t *ab = json_object_get(r, "a_to_b"), *ba = json_object_get(r, "b_to_a");
		char off[24], unc[24], mab[24], mba[24], pab[24], pba[24],
			ca[64], cb[64];
		fmt_ns(off, sizeof(off), json_object_get(r, "offset_ns"));
		fmt_ns(unc, sizeof(unc), json_object_get(r, "uncertainty_ns"));
		fmt_ns(mab, sizeof(mab), json_object_get(ab, "min_ns"));
		fmt_ns(mba, sizeof(mba), json_object_get(ba, "min_ns"));
		fmt_ns(pab, sizeof(pab), json_object_get(ab, "p50_corrected_ns"));
		fmt_ns(pba, sizeof(pba), json_object_get(ba, "p50_corrected_ns"));
		fmt_clock(ca, sizeof(ca), json_object_get(r, "clock_a"));
		fmt_clock(cb, sizeof(cb), json_object_get(r, "clock_b"));
		fprintf(out,
			"%-12.12s %-12.12s %11s %10s %10s %10s %10s %10s %-24s %-24s\n",
			json_string_value(json_object_get(r, "node_a")),
			json_string_value(json_object_get(r, "node_b")), off, unc,
			mab, mba, pab, pba, ca, cb);
	}
	fprintf(out, "OFFSET B-A = (MIN A->B - MIN B->A) / 2: B's clock minus "
		     "A's, if the fastest paths are symmetric (an asymmetry of "
		     "D shifts it by D/2);\nthe true offset lies in [-MIN B->A, "
		     "MIN A->B] whatever the paths. P50*: median with the offset "
		     "taken out.\n");
}
