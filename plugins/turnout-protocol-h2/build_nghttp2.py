"""cffi builder (API mode) for the nghttp2 shim: ``setup.py`` names it in ``cffi_modules``
(a build script, not part of the installed package).

The extension ``turnout_protocol_h2.codec._nghttp2`` compiles ``shim.c`` against the system
libnghttp2 (Debian 12: ``libnghttp2-dev`` 1.52, the ``mem_recv``/``mem_send`` API with the
backported rapid-reset and CONTINUATION limits). ``TURNOUT_H2_CFLAGS``/``TURNOUT_H2_LDFLAGS``
add flags (the AddressSanitizer build uses them).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from cffi import FFI

CDEF = """
typedef struct h2s h2s;
#define NGHTTP2_ERR_INVALID_ARGUMENT ...
#define NGHTTP2_ERR_BUFFER_ERROR ...
#define NGHTTP2_ERR_DEFERRED ...
#define NGHTTP2_ERR_STREAM_CLOSED ...
#define NGHTTP2_ERR_INVALID_STATE ...
#define NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE ...
#define NGHTTP2_ERR_SESSION_CLOSING ...
#define NGHTTP2_ERR_CALLBACK_FAILURE ...
#define NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS ...
#define NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE ...
typedef struct {
  uint32_t initial_stream_window, initial_connection_window, max_frame, max_header_list,
      max_concurrent_streams;
  uint64_t reset_burst, reset_rate, control_burst, control_rate;
  uint32_t max_continuations, max_outbound_ack;
  uint64_t max_pending_stream_bytes;
} h2s_options;

h2s *h2s_new(int server, const h2s_options *o);
void h2s_free(h2s *s);
ptrdiff_t h2s_feed(h2s *s, const char *data, size_t len);
size_t h2s_take(h2s *s, const char **p);
ptrdiff_t h2s_feed_take(h2s *s, const char *data, size_t len, const char **evp, size_t *evlen);
ptrdiff_t h2s_send(h2s *s, size_t max, const char **p);
int32_t h2s_submit_headers(h2s *s, int32_t sid, int kind, const char *blob, size_t len,
                           size_t nfields, int end_stream, void *py_handle);
int h2s_send_data(h2s *s, int32_t sid, const char *data, size_t len, int end_stream);
int h2s_resume(h2s *s, int32_t sid);
int64_t h2s_pending(h2s *s, int32_t sid);
int32_t h2s_send_window(h2s *s, int32_t sid);
int h2s_consume(h2s *s, int32_t sid, size_t n);
int h2s_rst(h2s *s, int32_t sid, uint32_t code);
int h2s_ping(h2s *s, const char *opaque);
int h2s_shutdown_notice(h2s *s);
int h2s_goaway(h2s *s, uint32_t code);
int h2s_terminate(h2s *s, uint32_t code);
int h2s_want_read(h2s *s);
int h2s_want_write(h2s *s);
int h2s_request_allowed(h2s *s);
uint32_t h2s_remote_setting(h2s *s, int id);
void h2s_stats(h2s *s, uint64_t *out);
const char *nghttp2_strerror(int lib_error_code);

extern "Python" ptrdiff_t _h2py_read(void *handle, int32_t stream_id, uint8_t *buf, size_t len,
                                     int *eof);
"""

_shim = Path(__file__).resolve().parent / "src" / "turnout_protocol_h2" / "codec" / "shim.c"
ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "turnout_protocol_h2.codec._nghttp2",
    _shim.read_text(),
    libraries=["nghttp2"],
    extra_compile_args=[
        "-O2",
        "-std=gnu11",
        *shlex.split(os.environ.get("TURNOUT_H2_CFLAGS", "")),
    ],
    extra_link_args=shlex.split(os.environ.get("TURNOUT_H2_LDFLAGS", "")),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
