/* turnout-protocol-h2: a small batching layer over libnghttp2 (1.52 API names).
 *
 * One call from Python feeds bytes (h2s_feed) and the events it produced are appended to one
 * growable event log (h2s_take hands it over). A header block reaches Python as ONE record
 * ("name\0value\0name\0value"), not one callback per header. Outbound data goes through a
 * per-stream pending buffer that nghttp2 pulls from under flow control (deferring when empty).
 *
 * Memory rules: every buffer grows on demand and has a bound (header blocks by
 * max_header_list_bytes, the event log by EV_SOFT_CAP through NGHTTP2_ERR_PAUSE, pending
 * stream data by max_pending_stream_bytes); per-stream state is freed when nghttp2 closes the
 * stream (or when its request HEADERS could not be sent), the rest when the session is freed.
 */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the Python data-source callback (defined by cffi from the cdef's extern "Python") */
static ptrdiff_t _h2py_read(void *handle, int32_t stream_id, uint8_t *buf, size_t len, int *eof);

enum { EV_HEADERS = 1, EV_DATA, EV_RST, EV_CLOSED, EV_WINDOW, EV_SETTINGS, EV_PING_ACK,
       EV_GOAWAY, EV_TERMINATED };
enum { KIND_REQUEST = 0, KIND_RESPONSE, KIND_INFORMATIONAL, KIND_TRAILERS };
enum { ST_OPENED = 0, ST_CLOSED, ST_LIVE, ST_RAPID_RESET, ST_CONTINUATION_FLOOD,
       ST_CONTROL_FLOOD, ST_HEADER_LIST_TOO_LARGE, ST_TOO_MANY_STREAMS, ST_CALLBACK_ERRORS,
       ST_GOAWAY_SENT_CODE, ST_GOAWAY_SENT, ST_PINGS_RECEIVED, ST_SETTINGS_RECEIVED,
       ST_RST_RECEIVED, ST_RST_SENT, ST_PROTOCOL_ERRORS, ST_COUNT };

#define EV_SOFT_CAP (256u * 1024u) /* pause nghttp2 once the event log holds this much */
#define GOAWAY_DEBUG_MAX 256u

typedef struct {
  uint8_t *p;
  size_t len, cap, off;
} buf_t;

/* event record header, followed by len payload bytes (layout mirrored in Python: "<BBxxiII") */
typedef struct {
  uint8_t type, flags, pad0, pad1;
  int32_t stream_id;
  uint32_t code, len;
} rec_t;

typedef struct stream {
  struct stream *prev, *next;
  int32_t id;
  int has_provider, deferred, eof, final_response, failed, responded;
  void *py_handle;      /* non-NULL: data comes from a Python source */
  buf_t pending;        /* outbound bytes not yet framed */
  uint8_t *trailers;    /* serialized "n\0v\0..." trailers to send after the data */
  size_t trailers_len, trailers_n;
} stream_t;

typedef struct {
  uint32_t initial_stream_window, initial_connection_window, max_frame, max_header_list,
      max_concurrent_streams;
  uint64_t reset_burst, reset_rate, control_burst, control_rate;
  uint32_t max_continuations, max_outbound_ack;
  uint64_t max_pending_stream_bytes;
} h2s_options;

typedef struct {
  double tokens, rate, burst;
  double last;
} bucket_t;

typedef struct h2s {
  nghttp2_session *ng;
  int server, dead, taken;
  h2s_options opt;
  buf_t ev, out, hdr;
  size_t last_rec; /* offset of the last record in ev, SIZE_MAX if none */
  size_t hdr_bytes; /* RFC 9113 header list size of the block being received */
  int32_t hdr_stream;
  int hdr_kind, hdr_status_1xx;
  stream_t *streams;
  uint64_t stats[ST_COUNT];
  bucket_t resets, control;
  int32_t incoming_live;
} h2s;

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bucket_take(bucket_t *b) {
  double t = now_sec();
  b->tokens += (t - b->last) * b->rate;
  if (b->tokens > b->burst) b->tokens = b->burst;
  b->last = t;
  if (b->tokens < 1.0) return 0;
  b->tokens -= 1.0;
  return 1;
}

static int buf_reserve(buf_t *b, size_t extra, size_t limit) {
  if (extra > limit || b->len > limit - extra) return -1;
  size_t need = b->len + extra;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_append(buf_t *b, const void *d, size_t n, size_t limit) {
  if (buf_reserve(b, n, limit)) return -1;
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

static void buf_free(buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

static size_t ev_limit(h2s *s) {
  /* the soft cap plus one maximal record: a header block or a DATA chunk (<= max_frame) */
  return EV_SOFT_CAP + (size_t)s->opt.max_header_list + (size_t)s->opt.max_frame + 64u * 1024u;
}

static int ev_add(h2s *s, int type, int flags, int32_t sid, uint32_t code, const void *p,
                  size_t n) {
  if (s->taken) {
    s->ev.len = 0;
    s->taken = 0;
    s->last_rec = SIZE_MAX;
  }
  rec_t r = {(uint8_t)type, (uint8_t)flags, 0, 0, sid, code, (uint32_t)n};
  size_t at = s->ev.len;
  if (buf_reserve(&s->ev, sizeof r + n, ev_limit(s))) return -1;
  buf_append(&s->ev, &r, sizeof r, SIZE_MAX);
  buf_append(&s->ev, p, n, SIZE_MAX);
  s->last_rec = at;
  return 0;
}

static void terminate(h2s *s, uint32_t code, int stat) {
  if (stat >= 0) s->stats[stat]++;
  nghttp2_session_terminate_session(s->ng, code);
  ev_add(s, EV_TERMINATED, 0, 0, code, NULL, 0);
}

static stream_t *stream_new(h2s *s, int32_t id) {
  stream_t *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->id = id;
  st->next = s->streams;
  if (s->streams) s->streams->prev = st;
  s->streams = st;
  s->stats[ST_OPENED]++;
  s->stats[ST_LIVE]++;
  return st;
}

static void stream_free(h2s *s, stream_t *st) {
  if (st->prev) st->prev->next = st->next;
  else s->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  buf_free(&st->pending);
  free(st->trailers);
  free(st);
  s->stats[ST_CLOSED]++;
  s->stats[ST_LIVE]--;
}

static stream_t *stream_get(h2s *s, int32_t id) {
  stream_t *st = nghttp2_session_get_stream_user_data(s->ng, id);
  if (st || s->server) return st;
  /* a client's request not sent yet has no nghttp2 stream: newest first in our list */
  for (st = s->streams; st; st = st->next)
    if (st->id == id) return st;
  return NULL;
}

/* "n\0v\0n\0v" (nfields entries, NUL-separated) -> nghttp2_nv array; NULL on a bad block */
static nghttp2_nv *nva_from_blob(const uint8_t *blob, size_t len, size_t nfields) {
  if (nfields == 0 || nfields % 2 || nfields > len + 1) return NULL;
  nghttp2_nv *nva = malloc(sizeof(nghttp2_nv) * (nfields / 2));
  if (!nva) return NULL;
  const uint8_t *p = blob, *end = blob + len;
  for (size_t i = 0; i < nfields; i++) {
    const uint8_t *z = memchr(p, 0, (size_t)(end - p));
    if ((z == NULL) != (i == nfields - 1)) goto bad; /* a NUL inside a field changes the count */
    const uint8_t *e = z ? z : end;
    size_t n = (size_t)(e - p);
    nghttp2_nv *nv = &nva[i / 2];
    if (i % 2 == 0) {
      int pseudo = n > 0 && p[0] == ':';
      if (n == 0 || !nghttp2_check_header_name(p + pseudo, n - pseudo)) goto bad;
      nv->name = (uint8_t *)p;
      nv->namelen = n;
      nv->flags = NGHTTP2_NV_FLAG_NONE;
    } else {
      if (!nghttp2_check_header_value(p, n)) goto bad;
      nv->value = (uint8_t *)p;
      nv->valuelen = n;
    }
    p = e + 1;
  }
  return nva;
bad:
  free(nva);
  return NULL;
}

/* ---- nghttp2 callbacks ---- */

/* The end of a stream's data: END_STREAM, or the trailers (submitted from inside this
 * callback, as nghttp2 allows) ending it instead. */
static ssize_t data_end(h2s *s, stream_t *st, int32_t sid, size_t n, uint32_t *flags) {
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  st->has_provider = 0;
  if (st->trailers) {
    nghttp2_nv *nva = nva_from_blob(st->trailers, st->trailers_len, st->trailers_n);
    int rv = nva ? nghttp2_submit_trailer(s->ng, sid, nva, st->trailers_n / 2) : -1;
    free(nva);
    free(st->trailers);
    st->trailers = NULL;
    if (rv) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return (ssize_t)n;
}

static ssize_t read_cb(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *source, void *ud) {
  h2s *s = ud;
  stream_t *st = source->ptr;
  (void)ng;
  if (st->failed) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (st->py_handle) {
    int eof = 0;
    ptrdiff_t n = _h2py_read(st->py_handle, sid, buf, length, &eof);
    if (n < 0 || (size_t)n > length) {
      /* the Python source raised (recorded by the binding) or broke its contract:
       * TEMPORAL fails this stream (RST_STREAM INTERNAL_ERROR), CALLBACK_FAILURE the
       * connection */
      s->stats[ST_CALLBACK_ERRORS]++;
      st->failed = 1;
      st->py_handle = NULL;
      return n == NGHTTP2_ERR_CALLBACK_FAILURE ? n : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (eof) {
      st->py_handle = NULL;
      st->eof = 1;
      return data_end(s, st, sid, (size_t)n, flags);
    }
    if (n == 0) {
      st->deferred = 1;
      return NGHTTP2_ERR_DEFERRED;
    }
    return n;
  }
  size_t avail = st->pending.len - st->pending.off;
  size_t n = avail < length ? avail : length;
  if (n) {
    memcpy(buf, st->pending.p + st->pending.off, n);
    st->pending.off += n;
    if (st->pending.off == st->pending.len) st->pending.off = st->pending.len = 0;
  }
  if (st->pending.len == 0 && st->eof) return data_end(s, st, sid, n, flags);
  if (n == 0) {
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
  h2s *s = ud;
  int32_t sid = f->hd.stream_id;
  s->hdr.len = 0;
  s->hdr_bytes = 0;
  s->hdr_stream = sid;
  s->hdr_status_1xx = 0;
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  stream_t *st = stream_get(s, sid);
  switch (f->headers.cat) {
  case NGHTTP2_HCAT_REQUEST:
    s->hdr_kind = KIND_REQUEST;
    if (!st) {
      st = stream_new(s, sid);
      if (!st || nghttp2_session_set_stream_user_data(ng, sid, st)) return NGHTTP2_ERR_CALLBACK_FAILURE;
      s->incoming_live++;
    }
    break;
  case NGHTTP2_HCAT_RESPONSE:
    s->hdr_kind = KIND_RESPONSE;
    break;
  default: /* NGHTTP2_HCAT_HEADERS: trailers, or a final response after 1xx */
    s->hdr_kind = (s->server || (st && st->final_response)) ? KIND_TRAILERS : KIND_RESPONSE;
  }
  return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
  h2s *s = ud;
  (void)flags;
  (void)ng;
  if (f->hd.type != NGHTTP2_HEADERS) return 0; /* PUSH_PROMISE: push is disabled */
  s->hdr_bytes += namelen + valuelen + 32;
  if (s->hdr_bytes > s->opt.max_header_list) {
    /* an HPACK bomb or simply too large: the peer was told the limit in SETTINGS */
    terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_HEADER_LIST_TOO_LARGE);
    s->hdr.len = 0;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3 && value[0] == '1')
    s->hdr_status_1xx = 1;
  size_t lim = (size_t)s->opt.max_header_list;
  if (buf_append(&s->hdr, name, namelen, lim) || buf_append(&s->hdr, "", 1, lim) ||
      buf_append(&s->hdr, value, valuelen, lim) || buf_append(&s->hdr, "", 1, lim))
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  /* keep the event log bounded: hand what we have to Python, continue on the next feed */
  if (!s->taken && s->ev.len > EV_SOFT_CAP) return NGHTTP2_ERR_PAUSE;
  return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud) {
  h2s *s = ud;
  (void)ng;
  (void)flags;
  if (ev_add(s, EV_DATA, 0, sid, 0, data, len)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (s->ev.len > EV_SOFT_CAP) return NGHTTP2_ERR_PAUSE;
  return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
  h2s *s = ud;
  int32_t sid = f->hd.stream_id;
  int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (f->hd.type) {
  case NGHTTP2_HEADERS: {
    int kind = s->hdr_kind;
    if (kind == KIND_RESPONSE && s->hdr_status_1xx) kind = KIND_INFORMATIONAL;
    stream_t *st = stream_get(s, sid);
    if (kind == KIND_RESPONSE && st) st->final_response = 1;
    size_t n = s->hdr.len ? s->hdr.len - 1 : 0; /* drop the last NUL */
    if (ev_add(s, EV_HEADERS, end, sid, (uint32_t)kind, s->hdr.p, n)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->hdr.len = 0;
    break;
  }
  case NGHTTP2_DATA:
    if (end) {
      /* set END_STREAM on the DATA record just written for this frame, if it is the last */
      uint8_t *r = s->last_rec != SIZE_MAX && !s->taken ? s->ev.p + s->last_rec : NULL;
      int32_t rsid = 0;
      if (r) memcpy(&rsid, r + offsetof(rec_t, stream_id), sizeof rsid);
      if (r && r[0] == EV_DATA && rsid == sid) r[offsetof(rec_t, flags)] = 1;
      else if (ev_add(s, EV_DATA, 1, sid, 0, NULL, 0)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    break;
  case NGHTTP2_RST_STREAM:
    s->stats[ST_RST_RECEIVED]++;
    if (ev_add(s, EV_RST, 0, sid, f->rst_stream.error_code, NULL, 0)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (s->server && !bucket_take(&s->resets)) terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_RAPID_RESET);
    break;
  case NGHTTP2_SETTINGS:
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
      s->stats[ST_SETTINGS_RECEIVED]++;
      if (ev_add(s, EV_SETTINGS, 0, 0, 0, NULL, 0)) return NGHTTP2_ERR_CALLBACK_FAILURE;
      if (!bucket_take(&s->control)) terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_CONTROL_FLOOD);
    }
    break;
  case NGHTTP2_PING:
    if (f->hd.flags & NGHTTP2_FLAG_ACK) {
      if (ev_add(s, EV_PING_ACK, 0, 0, 0, f->ping.opaque_data, 8)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else {
      s->stats[ST_PINGS_RECEIVED]++;
      if (!bucket_take(&s->control)) terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_CONTROL_FLOOD);
    }
    break;
  case NGHTTP2_WINDOW_UPDATE:
    if (ev_add(s, EV_WINDOW, 0, sid, (uint32_t)f->window_update.window_size_increment, NULL, 0))
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    break;
  case NGHTTP2_GOAWAY: {
    size_t n = f->goaway.opaque_data_len;
    if (n > GOAWAY_DEBUG_MAX) n = GOAWAY_DEBUG_MAX;
    if (ev_add(s, EV_GOAWAY, 0, f->goaway.last_stream_id, f->goaway.error_code,
               f->goaway.opaque_data, n))
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    break;
  }
  }
  return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud) {
  h2s *s = ud;
  (void)ng;
  (void)err;
  s->stats[ST_PROTOCOL_ERRORS]++;
  if (s->server && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
      (uint32_t)s->incoming_live >= s->opt.max_concurrent_streams)
    s->stats[ST_TOO_MANY_STREAMS]++;
  return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
  h2s *s = ud;
  (void)ng;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    s->stats[ST_GOAWAY_SENT]++;
    s->stats[ST_GOAWAY_SENT_CODE] = f->goaway.error_code;
  } else if (f->hd.type == NGHTTP2_RST_STREAM) {
    s->stats[ST_RST_SENT]++;
  }
  return 0;
}

static void stream_closed(h2s *s, stream_t *st, uint32_t code) {
  ev_add(s, EV_CLOSED, 0, st->id, code, NULL, 0); /* on failure Python still sees the count */
  if (s->server && (st->id & 1)) s->incoming_live--;
  stream_free(s, st);
}

static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud) {
  h2s *s = ud;
  (void)err;
  /* a request whose HEADERS never went out (e.g. after GOAWAY): nghttp2 never opened the
   * stream, so on_stream_close will not come; free our state here (rare: a list walk) */
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !s->server &&
      nghttp2_session_find_stream(ng, f->hd.stream_id) == NULL) {
    for (stream_t *st = s->streams; st; st = st->next)
      if (st->id == f->hd.stream_id) {
        stream_closed(s, st, NGHTTP2_REFUSED_STREAM);
        break;
      }
  }
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud) {
  h2s *s = ud;
  stream_t *st = stream_get(s, sid);
  if (st) {
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    stream_closed(s, st, code);
  }
  return 0;
}

/* ---- API used from Python ---- */

h2s *h2s_new(int server, const h2s_options *o) {
  h2s *s = calloc(1, sizeof *s);
  nghttp2_session_callbacks *cb = NULL;
  nghttp2_option *opt = NULL;
  if (!s || nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt)) goto fail;
  s->server = server;
  s->opt = *o;
  s->last_rec = SIZE_MAX;
  s->resets = (bucket_t){(double)o->reset_burst, (double)o->reset_rate, (double)o->reset_burst, now_sec()};
  s->control = (bucket_t){(double)o->control_burst, (double)o->control_rate, (double)o->control_burst, now_sec()};
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, o->max_outbound_ack);
  nghttp2_option_set_max_continuations(opt, o->max_continuations);
  /* nghttp2's own rapid-reset limiter (INTERNAL_ERROR) is a looser backstop behind ours */
  nghttp2_option_set_stream_reset_rate_limit(opt, o->reset_burst * 2, o->reset_rate * 2);
  if (!server) nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  int rv = server ? nghttp2_session_server_new2(&s->ng, cb, s, opt)
                  : nghttp2_session_client_new2(&s->ng, cb, s, opt);
  if (rv) goto fail;
  nghttp2_settings_entry iv[5] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, o->max_frame},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, o->max_header_list},
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->max_concurrent_streams},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, server ? 4 : 5)) goto fail;
  if (o->initial_connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
      nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
                                            (int32_t)o->initial_connection_window))
    goto fail;
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(opt);
  return s;
fail:
  if (cb) nghttp2_session_callbacks_del(cb);
  if (opt) nghttp2_option_del(opt);
  if (s) {
    if (s->ng) nghttp2_session_del(s->ng);
    free(s);
  }
  return NULL;
}

void h2s_free(h2s *s) {
  if (!s) return;
  nghttp2_session_del(s->ng); /* no callbacks run from here */
  while (s->streams) stream_free(s, s->streams);
  buf_free(&s->ev);
  buf_free(&s->out);
  buf_free(&s->hdr);
  free(s);
}

/* Feed received bytes. Returns how many were consumed (less than len when the event log
 * reached its soft cap: take the events and feed the rest), or a negative nghttp2 error
 * after which the session is terminated (a GOAWAY is queued where one can still be sent). */
ptrdiff_t h2s_feed(h2s *s, const char *data, size_t len) {
  if (s->dead) return NGHTTP2_ERR_EOF;
  ssize_t rv = nghttp2_session_mem_recv(s->ng, (const uint8_t *)data, len);
  if (rv >= 0) return rv;
  switch (rv) {
  case NGHTTP2_ERR_FLOODED:
    terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_CONTROL_FLOOD);
    break;
  case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
    terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, ST_CONTINUATION_FLOOD);
    break;
  case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
    terminate(s, NGHTTP2_PROTOCOL_ERROR, ST_PROTOCOL_ERRORS);
    break;
  case NGHTTP2_ERR_CALLBACK_FAILURE:
    terminate(s, NGHTTP2_INTERNAL_ERROR, ST_CALLBACK_ERRORS);
    break;
  default:
    terminate(s, NGHTTP2_INTERNAL_ERROR, -1);
  }
  s->dead = 1; /* no more input is read; data_to_send still flushes the GOAWAY */
  return rv;
}

/* The event log since the last take; valid until the next call that adds events. */
size_t h2s_take(h2s *s, const char **p) {
  if (s->taken) {
    *p = NULL;
    return 0;
  }
  s->taken = 1;
  *p = (const char *)s->ev.p;
  return s->ev.len;
}

/* h2s_feed, then h2s_take into evp and evlen: one call from Python per received chunk. */
ptrdiff_t h2s_feed_take(h2s *s, const char *data, size_t len, const char **evp, size_t *evlen) {
  ptrdiff_t rv = h2s_feed(s, data, len);
  *evlen = h2s_take(s, evp);
  return rv;
}

/* Serialize up to about max bytes of frames to send. Returns the length (the bytes are at
 * *p until the next call) or a negative nghttp2 error (the session is then terminated). */
ptrdiff_t h2s_send(h2s *s, size_t max, const char **cp) {
  const uint8_t **p = (const uint8_t **)cp;
  int retried = 0;
  s->out.len = 0;
  *p = NULL;
  while (s->out.len < max) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(s->ng, &d);
    if (n == NGHTTP2_ERR_CALLBACK_FAILURE && !retried) {
      /* a Python callback failed beyond the stream (counted in read_cb): end the
       * connection with INTERNAL_ERROR; the failed source is not called again */
      retried = 1;
      terminate(s, NGHTTP2_INTERNAL_ERROR, -1);
      s->dead = 1;
      continue;
    }
    if (n < 0) {
      s->dead = 1;
      ev_add(s, EV_TERMINATED, 0, 0, NGHTTP2_INTERNAL_ERROR, NULL, 0);
      *p = s->out.p;
      return s->out.len ? (ptrdiff_t)s->out.len : n;
    }
    if (n == 0) break;
    if (buf_append(&s->out, d, (size_t)n, SIZE_MAX)) return NGHTTP2_ERR_NOMEM;
  }
  *p = s->out.p;
  return (ptrdiff_t)s->out.len;
}

static nghttp2_data_provider provider(stream_t *st) {
  nghttp2_data_provider d;
  d.source.ptr = st;
  d.read_callback = read_cb;
  return d;
}

/* kind: KIND_REQUEST (stream_id ignored; returns the new stream id), KIND_RESPONSE,
 * KIND_INFORMATIONAL, KIND_TRAILERS. Without end_stream a request/response gets a data
 * source fed by h2s_send_data. Returns <0 on error (-1: a malformed header block). */
int32_t h2s_submit_headers(h2s *s, int32_t sid, int kind, const char *cblob, size_t len,
                           size_t nfields, int end_stream, void *py_handle) {
  const uint8_t *blob = (const uint8_t *)cblob;
  if (s->dead) return NGHTTP2_ERR_SESSION_CLOSING;
  if (kind == KIND_TRAILERS) {
    stream_t *st = stream_get(s, sid);
    if (!st) return NGHTTP2_ERR_STREAM_CLOSED;
    if (!st->has_provider || st->eof || st->trailers) return NGHTTP2_ERR_INVALID_STATE;
    nghttp2_nv *check = nva_from_blob(blob, len, nfields);
    if (!check) return -1;
    free(check);
    st->trailers = malloc(len ? len : 1);
    if (!st->trailers) return NGHTTP2_ERR_NOMEM;
    memcpy(st->trailers, blob, len);
    st->trailers_len = len;
    st->trailers_n = nfields;
    if (!st->py_handle) st->eof = 1; /* a Python source ends the data itself (eof) */
    if (st->deferred) {
      st->deferred = 0;
      nghttp2_session_resume_data(s->ng, sid);
    }
    return 0;
  }
  nghttp2_nv *nva = nva_from_blob(blob, len, nfields);
  if (!nva) return -1;
  size_t n = nfields / 2;
  int32_t rv;
  if (kind == KIND_REQUEST) {
    stream_t *st = stream_new(s, -1);
    if (!st) {
      free(nva);
      return NGHTTP2_ERR_NOMEM;
    }
    nghttp2_data_provider d = provider(st);
    st->py_handle = py_handle;
    st->has_provider = !end_stream;
    rv = nghttp2_submit_request(s->ng, NULL, nva, n, end_stream ? NULL : &d, st);
    if (rv < 0) stream_free(s, st);
    else st->id = rv;
  } else if (kind == KIND_RESPONSE) {
    stream_t *st = stream_get(s, sid);
    if (!st) rv = NGHTTP2_ERR_STREAM_CLOSED;
    else if (st->responded) rv = NGHTTP2_ERR_INVALID_STATE; /* one final response */
    else {
      nghttp2_data_provider d = provider(st);
      st->py_handle = py_handle;
      st->has_provider = !end_stream;
      rv = nghttp2_submit_response(s->ng, sid, nva, n, end_stream ? NULL : &d);
      if (rv) st->has_provider = 0, st->py_handle = NULL;
      else st->responded = 1;
    }
  } else {
    rv = nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, sid, NULL, nva, n, NULL);
  }
  free(nva);
  return rv;
}

/* Queue bytes on a stream's data source (and end the stream when end_stream). */
int h2s_send_data(h2s *s, int32_t sid, const char *data, size_t len, int end_stream) {
  stream_t *st = stream_get(s, sid);
  if (!st) return NGHTTP2_ERR_STREAM_CLOSED;
  if (!st->has_provider || st->eof || st->py_handle) return NGHTTP2_ERR_INVALID_STATE;
  if (st->pending.off) { /* compact */
    memmove(st->pending.p, st->pending.p + st->pending.off, st->pending.len - st->pending.off);
    st->pending.len -= st->pending.off;
    st->pending.off = 0;
  }
  if (buf_append(&st->pending, data, len, (size_t)s->opt.max_pending_stream_bytes))
    return NGHTTP2_ERR_BUFFER_ERROR;
  if (end_stream) st->eof = 1;
  if (st->deferred && (len || end_stream)) {
    st->deferred = 0;
    nghttp2_session_resume_data(s->ng, sid);
  }
  return 0;
}

int h2s_resume(h2s *s, int32_t sid) {
  stream_t *st = stream_get(s, sid);
  if (!st) return NGHTTP2_ERR_STREAM_CLOSED;
  if (!st->deferred) return 0;
  st->deferred = 0;
  return nghttp2_session_resume_data(s->ng, sid);
}

/* Bytes queued on the stream's source but not yet framed (-1: no such stream). */
int64_t h2s_pending(h2s *s, int32_t sid) {
  stream_t *st = stream_get(s, sid);
  return st ? (int64_t)(st->pending.len - st->pending.off) : -1;
}

int32_t h2s_send_window(h2s *s, int32_t sid) {
  int32_t a = nghttp2_session_get_stream_remote_window_size(s->ng, sid);
  int32_t b = nghttp2_session_get_remote_window_size(s->ng);
  if (a < 0) return a;
  return a < b ? a : b;
}

int h2s_consume(h2s *s, int32_t sid, size_t n) { return nghttp2_session_consume(s->ng, sid, n); }

int h2s_rst(h2s *s, int32_t sid, uint32_t code) {
  return nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, sid, code);
}

int h2s_ping(h2s *s, const char *opaque) {
  return nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, (const uint8_t *)opaque);
}

int h2s_shutdown_notice(h2s *s) {
  return s->server ? nghttp2_submit_shutdown_notice(s->ng) : 0;
}

int h2s_goaway(h2s *s, uint32_t code) {
  int32_t last = nghttp2_session_get_last_proc_stream_id(s->ng);
  return nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, last, code, NULL, 0);
}

int h2s_terminate(h2s *s, uint32_t code) { return nghttp2_session_terminate_session(s->ng, code); }

int h2s_want_read(h2s *s) { return !s->dead && nghttp2_session_want_read(s->ng); }
int h2s_want_write(h2s *s) { return nghttp2_session_want_write(s->ng); }
int h2s_request_allowed(h2s *s) { return !s->dead && nghttp2_session_check_request_allowed(s->ng); }
uint32_t h2s_remote_setting(h2s *s, int id) { return nghttp2_session_get_remote_settings(s->ng, id); }

void h2s_stats(h2s *s, uint64_t *out) { memcpy(out, s->stats, sizeof s->stats); }
