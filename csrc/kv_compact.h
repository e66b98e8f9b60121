/*
 * kv_compact.h -- the compactor's internal interface (the public calls are in
 * kv.h): compaction manifests, read at open by kv_recover.c.
 */
#ifndef KV_COMPACT_H
#define KV_COMPACT_H

#include <stdint.h>

#include "kv_db.h"

/* Completes (writer) or honours (read-only) every compaction manifest in the
 * store directory (FORMAT.md section 7.1).  *ids_out lists the segments a
 * read-only open must ignore; *max_id is the largest manifest id seen, so
 * that ids are not handed out again. */
int kv_manifests_apply(kv_db *db, uint64_t **ids_out, uint32_t *n_out, uint64_t *max_id);

#endif
