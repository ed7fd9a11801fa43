# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled load tools of the bench (module ``fanout.bench._swarm``).

Theory of operation. ``run(config)`` drives one process's share of a listener swarm
in a single epoll loop with the GIL released. Listener ``i`` is opened at
``t0 + global_index / arrival_rate`` on mount ``paths[global_index % len(paths)]``;
it connects (non-blocking, from one of several 127.0.0.x source addresses), sends
``GET``, reads the response head (following one redirect), then reads the body:
*fast* listeners on every EPOLLIN, *paced* ones are taken out of epoll and read from
a due-ordered queue every ``read_interval`` with a token bucket of ``read_rate``
bytes/s. Every body byte goes through the verifier (the C twin of
``fanout.bench.payload.StreamVerifier``: ICY layer, then frame layer), which also
records source→listener latency. A sweep every ``SWEEP_NS`` times out heads, counts
stalls and reconnects listeners that wait for it (``reconnect_after``: a dropped or
refused listener tries again, as a player does). ``churn_rate`` closes established
listeners in turn and opens them anew. At ``t_end`` all sockets are closed and the
totals returned as a dict.

Time to first byte runs from a clock read just before ``socket()`` to one read when
the first body byte is in hand; ``ttfb_loop`` keeps the same span on the loop's clock
(read once per epoll turn), as the bench measured it before, and ``connect_time`` /
``head_time`` split it: a slow TCP handshake is the kernel's backlog, a slow head the
server's accept path. A connection the server closes keeps its verification errors
apart (``cut_errors``): the soak's bar is about the listeners a fault did not cut.

Nothing here allocates per byte or per frame; per-listener state is one ``Listener``
struct (about half a kilobyte), so a process holds tens of thousands of listeners.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

SWEEP_NS = 100_000_000          # timeouts and stall checks
cdef int64_t C_SWEEP_NS = SWEEP_NS
cdef int64_t PROGRESS_NS = 1_000_000_000
cdef int OPEN_BURST = 256       # listeners opened per loop turn, so I/O interleaves
cdef uint8_t TEMPLATE[FRAME_SIZE]
cdef const char *ICY_PREFIX = b"StreamTitle='"
cdef int ICY_PREFIX_LEN = 13
cdef const char *USER_AGENT = b"fanout-bench-swarm/1"


# ---------------------------------------------------------------------------------
# The stream layout (twin of payload.py)

cdef void init_template() noexcept nogil:
    cdef int i
    memset(TEMPLATE, 0, FRAME_SIZE)
    TEMPLATE[0] = 0xFF
    TEMPLATE[1] = 0xFB
    TEMPLATE[2] = 0x94
    TEMPLATE[3] = 0xC0
    memcpy(&TEMPLATE[MAGIC_AT], b"FOB1", 4)
    for i in range(FILLER_AT, FRAME_SIZE):
        TEMPLATE[i] = 0x20 + i % 0x5F

init_template()


cdef inline bint would_block() noexcept nogil:
    """Whether the last syscall failed only because it would have blocked (EWOULDBLOCK
    is EAGAIN on Linux): a normal result, not an error."""
    return errno == EAGAIN or errno == EINTR


cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline uint32_t checksum(uint64_t counter, uint64_t stamp) noexcept nogil:
    cdef uint64_t z = (counter * 0x9E3779B97F4A7C15ULL) ^ stamp
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return <uint32_t>(z ^ (z >> 31))


cdef inline void write_frame(uint8_t *f, uint64_t counter, uint64_t stamp) noexcept nogil:
    cdef uint64_t c = htole64(counter), s = htole64(stamp)
    cdef uint32_t k = htole32(checksum(counter, stamp))
    memcpy(f, TEMPLATE, FRAME_SIZE)
    memcpy(f + COUNTER_AT, &c, 8)
    memcpy(f + STAMP_AT, &s, 8)
    memcpy(f + CHECK_AT, &k, 4)


cdef inline int parse_frame(const uint8_t *f, uint64_t *counter, uint64_t *stamp) noexcept nogil:
    """Return 1 and fill counter/stamp if every byte of ``f`` is right, else 0."""
    cdef uint64_t c, s
    cdef uint32_t k
    if memcmp(f, TEMPLATE, COUNTER_AT) != 0:
        return 0
    if memcmp(f + FILLER_AT, &TEMPLATE[FILLER_AT], FRAME_SIZE - FILLER_AT) != 0:
        return 0
    memcpy(&c, f + COUNTER_AT, 8)
    memcpy(&s, f + STAMP_AT, 8)
    memcpy(&k, f + CHECK_AT, 4)
    counter[0] = le64toh(c)
    stamp[0] = le64toh(s)
    return le32toh(k) == checksum(counter[0], stamp[0])


cdef inline int hist_index_c(int64_t value_us) noexcept nogil:
    cdef int exp, idx
    if value_us < SUB_BUCKETS:
        return <int>value_us if value_us > 0 else 0
    exp = 63 - __builtin_clzll(<unsigned long long>value_us)
    idx = SUB_BUCKETS + (exp - 4) * SUB_BUCKETS + <int>((value_us >> (exp - 4)) & (SUB_BUCKETS - 1))
    return idx if idx < HIST_SIZE else HIST_SIZE - 1


# ---------------------------------------------------------------------------------
# The verifier (twin of payload.StreamVerifier; same states, same counters)

cdef void verifier_init(Verifier *v, int metaint) noexcept nogil:
    memset(v, 0, sizeof(Verifier))
    v.metaint = metaint
    v.audio_left = metaint
    v.meta_left = -1


cdef inline void accept_frame(Verifier *v, uint64_t counter, uint64_t stamp, int64_t now,
                              Counts *c, uint64_t *latency) noexcept nogil:
    if v.started and counter > v.expected + v.slack:
        c.gaps += 1
        c.missing_frames += counter - v.expected - v.slack
        v.errors += 1
    elif v.started and counter < v.expected:
        c.duplicates += 1
        v.errors += 1
    v.started = 1
    v.expected = counter + 1
    v.bad_run = 0
    v.slack = 0
    c.frames_ok += 1
    c.verified_bytes += FRAME_SIZE
    latency[hist_index_c((now - <int64_t>stamp) // 1000)] += 1


cdef inline int check_locked(Verifier *v, const uint8_t *f, int64_t now, Counts *c,
                             uint64_t *latency) noexcept nogil:
    """Check the next frame slot; return 1 if the alignment was lost."""
    cdef uint64_t counter, stamp
    if parse_frame(f, &counter, &stamp):
        accept_frame(v, counter, stamp, now, c, latency)
        return 0
    c.corrupt_frames += 1
    v.errors += 1
    v.expected += 1          # assume the slot held the expected frame
    v.bad_run += 1
    if v.bad_run < 2:
        return 0
    # the failed slots may have held the expected frames, or bytes inserted before
    # them: whichever frame the hunt finds next, up to bad_run frames are excused
    v.locked = 0
    v.slack = v.bad_run
    v.expected -= v.bad_run
    c.resyncs += 1
    return 1


cdef void hunt(Verifier *v, int64_t now, Counts *c, uint64_t *latency) noexcept nogil:
    """Try the full frame buffer as a frame start; else drop up to the next 0xFF."""
    cdef uint64_t counter, stamp
    cdef const uint8_t *p
    cdef uint32_t skip
    if parse_frame(v.frame, &counter, &stamp):
        v.locked = 1
        accept_frame(v, counter, stamp, now, c, latency)
        v.fill = 0
        return
    p = <const uint8_t *>memchr(&v.frame[1], 0xFF, FRAME_SIZE - 1)
    skip = <uint32_t>(p - v.frame) if p != NULL else FRAME_SIZE
    c.skipped_bytes += skip
    memmove(v.frame, &v.frame[skip], FRAME_SIZE - skip)
    v.fill = FRAME_SIZE - skip


cdef void feed_audio(Verifier *v, const uint8_t *data, size_t n, int64_t now, Counts *c,
                     uint64_t *latency) noexcept nogil:
    cdef size_t take
    c.audio_bytes += n
    while n > 0:
        if v.fill == 0 and v.locked:
            while n >= FRAME_SIZE:   # the common case: verify in place
                if check_locked(v, data, now, c, latency):
                    break
                data += FRAME_SIZE
                n -= FRAME_SIZE
            if not v.locked:
                data += 1            # hunt again from inside the slot that failed
                n -= 1
                c.skipped_bytes += 1
                continue
            if n > 0:
                memcpy(v.frame, data, n)
                v.fill = <uint32_t>n
            return
        take = FRAME_SIZE - v.fill
        if take > n:
            take = n
        memcpy(&v.frame[v.fill], data, take)
        v.fill += <uint32_t>take
        data += take
        n -= take
        while v.fill == FRAME_SIZE:
            if v.locked:
                if check_locked(v, v.frame, now, c, latency):
                    memmove(v.frame, &v.frame[1], FRAME_SIZE - 1)
                    v.fill = FRAME_SIZE - 1
                    c.skipped_bytes += 1
                else:
                    v.fill = 0
            else:
                hunt(v, now, c, latency)


cdef inline void end_icy_block(Verifier *v, Counts *c) noexcept nogil:
    if v.meta_bad:
        c.icy_errors += 1
        v.errors += 1
    v.meta_left = -1
    v.audio_left = v.metaint


cdef size_t feed_icy(Verifier *v, const uint8_t *data, size_t n, int64_t now, Counts *c,
                     uint64_t *latency) noexcept nogil:
    """Consume a prefix of ``data`` in the current ICY state; return its length."""
    cdef size_t take, k
    if v.meta_left < 0:
        take = <size_t>v.audio_left if <size_t>v.audio_left < n else n
        feed_audio(v, data, take, now, c, latency)
        v.audio_left -= <int32_t>take
        if v.audio_left == 0:
            v.meta_left = 0
        return take
    if v.meta_left == 0:
        c.icy_blocks += 1
        v.meta_left = data[0] * 16
        v.meta_pos = 0
        v.meta_bad = 0
        if v.meta_left == 0:
            end_icy_block(v, c)
        return 1
    take = <size_t>v.meta_left if <size_t>v.meta_left < n else n
    k = 0
    while k < take and v.meta_pos + <int32_t>k < ICY_PREFIX_LEN:
        if data[k] != <uint8_t>ICY_PREFIX[v.meta_pos + k]:
            v.meta_bad = 1
        k += 1
    v.meta_pos += <int32_t>take
    v.meta_left -= <int32_t>take
    if v.meta_left == 0:
        if data[take - 1] != 0:
            v.meta_bad = 1     # a block always ends with at least one NUL
        end_icy_block(v, c)
    return take


cdef void verifier_feed(Verifier *v, const uint8_t *data, size_t n, int64_t now, Counts *c,
                        uint64_t *latency) noexcept nogil:
    cdef size_t used
    c.body_bytes += n
    if v.metaint == 0:
        feed_audio(v, data, n, now, c, latency)
        return
    while n > 0:
        used = feed_icy(v, data, n, now, c, latency)
        data += used
        n -= used


# ---------------------------------------------------------------------------------
# Response heads

cdef int find_head_end(const char *h, int n) noexcept nogil:
    """Return the offset just past the blank line ending the head, or -1."""
    cdef int i = 0
    while i < n:
        if h[i] == c'\n':
            if i + 1 < n and h[i + 1] == c'\n':
                return i + 2
            if i + 2 < n and h[i + 1] == c'\r' and h[i + 2] == c'\n':
                return i + 3
        i += 1
    return -1


cdef int parse_status(const char *h, int n) noexcept nogil:
    """Return the status code of ``HTTP/x.y NNN`` or ``ICY NNN``, or -1."""
    cdef int i = 0, code = 0, digits = 0
    if n >= 5 and memcmp(h, b"HTTP/", 5) == 0:
        i = 5
    elif n >= 4 and memcmp(h, b"ICY ", 4) == 0:
        i = 3
    else:
        return -1
    while i < n and h[i] != c' ':
        i += 1
    while i < n and h[i] == c' ':
        i += 1
    while i < n and digits < 3 and c'0' <= h[i] <= c'9':
        code = code * 10 + (h[i] - c'0')
        digits += 1
        i += 1
    return code if digits == 3 and code < STATUS_CODES else -1


cdef const char *find_header(const char *h, int n, const char *name, int *value_len) noexcept nogil:
    """Return the value of header ``name`` (lower-case, with its colon), or NULL."""
    cdef int i = 0, start, name_len = <int>strlen(name)
    while i < n:
        while i < n and h[i] != c'\n':
            i += 1
        i += 1
        if i + name_len <= n and strncasecmp(h + i, name, name_len) == 0:
            start = i + name_len
            while start < n and (h[start] == c' ' or h[start] == c'\t'):
                start += 1
            i = start
            while i < n and h[i] != c'\r' and h[i] != c'\n':
                i += 1
            value_len[0] = i - start
            return h + start
    return NULL


cdef int parse_int(const char *p, int n) noexcept nogil:
    cdef int i = 0, v = 0
    while i < n and c'0' <= p[i] <= c'9' and v < 100000000:
        v = v * 10 + (p[i] - c'0')
        i += 1
    return v


cdef int parse_location(const char *p, int n, uint32_t *addr, uint16_t *port,
                        char **path) noexcept nogil:
    """Parse ``http://A.B.C.D[:port]/path`` (or localhost) on 127.0.0.0/8; 0 on success."""
    cdef char host[64]
    cdef int i = 7, start, port_num = 80
    if n < 8 or strncasecmp(p, b"http://", 7) != 0:
        return -1
    start = i
    while i < n and p[i] != c':' and p[i] != c'/':
        i += 1
    if i - start <= 0 or i - start >= 63:
        return -1
    memcpy(host, p + start, i - start)
    host[i - start] = 0
    if strncasecmp(host, b"localhost", 10) == 0:
        memcpy(host, b"127.0.0.1", 10)
    if inet_pton(AF_INET, host, addr) != 1 or (ntohl(addr[0]) >> 24) != 127:
        return -1                               # loopback only, by design
    if i < n and p[i] == c':':
        i += 1
        port_num = parse_int(p + i, n - i)
        while i < n and p[i] != c'/':
            i += 1
    if port_num <= 0 or port_num > 65535:
        return -1
    port[0] = htons(<uint16_t>port_num)
    path[0] = <char *>malloc(n - i + 2)
    if path[0] == NULL:
        return -1
    if i < n:
        memcpy(path[0], p + i, n - i)
        path[0][n - i] = 0
    else:
        memcpy(path[0], b"/", 2)
    return 0


# ---------------------------------------------------------------------------------
# The listener life cycle

cdef void release(Listener *L) noexcept nogil:
    if L.fd >= 0:
        close(L.fd)            # also removes it from the epoll set
        L.fd = -1
    if L.head != NULL:
        free(L.head)
        L.head = NULL


cdef inline void end_connection(Swarm *s, Listener *L, uint8_t state, int64_t now) noexcept nogil:
    """Close ``L``; it stays in ``state``, or reconnects later if the swarm does that."""
    release(L)
    L.state = state
    if s.reconnect_after > 0:
        L.state = L_WAIT
        L.t_reopen = now + s.reconnect_after


cdef void fail(Swarm *s, Listener *L, int reason) noexcept nogil:
    s.failed += 1
    s.fail_reasons[reason] += 1
    end_connection(s, L, L_FAILED, mono_ns())


cdef void drop(Swarm *s, Listener *L, int64_t now) noexcept nogil:
    """The server ended an established listener before the end of the run. Its errors
    are counted apart too: a connection cut (a killed worker) may end mid-stream."""
    if L.stalled:
        s.stall_ns += now - L.t_last_rx
    s.dropped += 1
    s.cut_errors += L.v.errors
    if L.v.errors > 0:
        s.cut_error_listeners += 1
    end_connection(s, L, L_DONE, now)


cdef inline int64_t arrival_time(Swarm *s, int i) noexcept nogil:
    if s.arrival_rate <= 0:
        return s.t0
    return s.t0 + <int64_t>((<double>i * s.index_stride + s.index_offset) * 1e9 / s.arrival_rate)


cdef void connect_listener(Swarm *s, int i) noexcept nogil:
    cdef Listener *L = &s.ls[i]
    cdef sockaddr_in sin
    cdef epoll_event ev
    cdef int one = 1, rc
    L.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if L.fd < 0:
        fail(s, L, F_SOCKET)
        return
    memset(&sin, 0, sizeof(sin))
    sin.sin_family = AF_INET
    if s.n_src > 0:
        # many source addresses, and the port picked at connect(): no ephemeral-port
        # exhaustion even with tens of thousands of listeners and TIME_WAITs
        setsockopt(L.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one))
        sin.sin_addr.s_addr = s.src_addrs[(i * s.index_stride + s.index_offset) % s.n_src]
        if bind(L.fd, <sockaddr *>&sin, sizeof(sin)) != 0:
            fail(s, L, F_SOCKET)
            return
    sin.sin_addr.s_addr = L.dst_addr
    sin.sin_port = L.dst_port
    rc = connect(L.fd, <sockaddr *>&sin, sizeof(sin))
    if rc != 0 and errno != EINPROGRESS:
        fail(s, L, F_CONNECT)
        return
    L.state = L_CONNECTING
    ev.events = EPOLLOUT
    ev.data.u32 = <uint32_t>i
    if epoll_ctl(s.ep, EPOLL_CTL_ADD, L.fd, &ev) != 0:
        fail(s, L, F_SOCKET)


cdef void open_listener(Swarm *s, int i, int64_t now) noexcept nogil:
    """Open a new connection for slot ``i`` (first arrival, churn or reconnect)."""
    cdef Listener *L = &s.ls[i]
    if L.path != NULL:
        free(L.path)
        L.path = NULL
    L.redirects = 0
    L.stalled = 0
    L.rx = 0
    L.t_first = 0
    L.t_open = now
    L.dst_addr = s.dst_addr
    L.dst_port = s.dst_port
    L.mount = <uint32_t>((i * s.index_stride + s.index_offset) % s.n_paths)
    s.opened += 1
    # TTFB starts here, on a fresh clock: the loop's `now` may be a whole turn old
    L.t_socket = mono_ns()
    connect_listener(s, i)


cdef void open_due(Swarm *s, int64_t now) noexcept nogil:
    cdef int budget = OPEN_BURST
    while s.next_open < s.n and budget > 0 and arrival_time(s, s.next_open) <= now:
        open_listener(s, s.next_open, now)
        s.open_lag[hist_index_c((s.ls[s.next_open].t_socket - arrival_time(s, s.next_open)) // 1000)] += 1
        s.next_open += 1
        budget -= 1


cdef void churn(Swarm *s, int64_t now) noexcept nogil:
    """Close the next established listener (round robin) and open it anew, as a player
    that leaves and another that arrives."""
    cdef int k, i
    cdef Listener *L
    for k in range(s.next_open):
        i = (s.churn_cursor + k) % s.next_open
        L = &s.ls[i]
        if L.state == L_BODY:
            s.churn_cursor = i + 1
            if L.stalled:
                s.stall_ns += now - L.t_last_rx
            release(L)
            s.churned += 1
            open_listener(s, i, now)
            return


cdef void send_request(Swarm *s, int i, uint32_t events) noexcept nogil:
    cdef Listener *L = &s.ls[i]
    cdef char req[1024]
    cdef char host[32]
    cdef int err = 0, n
    cdef socklen_t len_ = sizeof(err)
    cdef epoll_event ev
    if not (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)):
        return                  # a stale event of the fd before a redirect
    if getsockopt(L.fd, SOL_SOCKET, SO_ERROR, &err, &len_) != 0 or err != 0:
        fail(s, L, F_CONNECT)
        return
    if L.redirects == 0:
        s.connect_time[hist_index_c((mono_ns() - L.t_socket) // 1000)] += 1
    inet_ntop(AF_INET, &L.dst_addr, host, sizeof(host))
    n = snprintf(req, sizeof(req),
                 b"GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: %s\r\n%sAccept: */*\r\n\r\n",
                 L.path if L.path != NULL else s.paths[L.mount], host, ntohs(L.dst_port), USER_AGENT,
                 b"Icy-MetaData: 1\r\n" if s.icy else b"")
    if n <= 0 or n >= <int>sizeof(req) or send(L.fd, req, n, MSG_NOSIGNAL) != n:
        fail(s, L, F_CONNECT)
        return
    L.head = <char *>malloc(HEAD_MAX)
    if L.head == NULL:
        fail(s, L, F_SOCKET)
        return
    L.head_len = 0
    L.state = L_HEAD
    ev.events = EPOLLIN
    ev.data.u32 = <uint32_t>i
    epoll_ctl(s.ep, EPOLL_CTL_MOD, L.fd, &ev)


cdef inline void queue_push(Swarm *s, int i, int64_t due) noexcept nogil:
    cdef int pos = (s.q_head + s.q_len) % s.n
    s.queue[pos] = i
    s.due[pos] = due
    s.q_len += 1
    s.ls[i].queued = 1


cdef void on_body(Swarm *s, Listener *L, const uint8_t *data, size_t n, int64_t now) noexcept nogil:
    cdef uint32_t errors_before = L.v.errors
    if L.t_first == 0:
        L.t_first = now
        s.ttfb[hist_index_c((mono_ns() - L.t_socket) // 1000)] += 1
        s.ttfb_loop[hist_index_c((now - L.t_open) // 1000)] += 1
    if L.stalled:
        s.stall_ns += now - L.t_last_rx
        L.stalled = 0
    L.t_last_rx = now
    # The first `prebuffer` bytes (the burst a player reads first) are old by design: they
    # would only measure the server's burst size, so their frames are kept apart from the
    # latency figure. A read may straddle that boundary: split it there.
    cdef size_t burst = 0
    if L.rx < s.prebuffer:
        burst = <size_t>(s.prebuffer - L.rx) if <size_t>(s.prebuffer - L.rx) < n else n
    L.rx += <int64_t>n
    if burst > 0:
        verifier_feed(&L.v, data, burst, now, &s.counts, &s.burst_latency[0])
    if n > burst:
        verifier_feed(&L.v, data + burst, n - burst, now, &s.counts, &s.latency[0])
    if errors_before == 0 and L.v.errors > 0:
        s.error_listeners += 1


cdef void start_body(Swarm *s, int i, int head_end, int64_t now) noexcept nogil:
    cdef Listener *L = &s.ls[i]
    cdef int metaint = 0, value_len = 0, extra = L.head_len - head_end
    cdef const char *value
    if s.icy:
        value = find_header(L.head, head_end, b"icy-metaint:", &value_len)
        if value != NULL:
            metaint = parse_int(value, value_len)
    verifier_init(&L.v, metaint)
    s.established += 1
    L.state = L_BODY
    L.t_last_rx = now
    L.t_tokens = now
    L.tokens = s.prebuffer - extra   # a player fills its buffer first (the server's burst)
    if extra > 0:
        on_body(s, L, <const uint8_t *>L.head + head_end, extra, now)
    free(L.head)
    L.head = NULL
    if s.read_rate > 0:
        epoll_ctl(s.ep, EPOLL_CTL_DEL, L.fd, NULL)
        if not L.queued:        # a churned slot may still be queued from its last connection
            queue_push(s, i, now + s.read_interval)


cdef void follow_redirect(Swarm *s, int i, int head_end) noexcept nogil:
    cdef Listener *L = &s.ls[i]
    cdef int value_len = 0
    cdef const char *value = find_header(L.head, head_end, b"location:", &value_len)
    cdef uint32_t addr
    cdef uint16_t port
    cdef char *path = NULL
    if L.redirects > 0 or value == NULL or parse_location(value, value_len, &addr, &port, &path) != 0:
        fail(s, L, F_REDIRECT)
        return
    release(L)
    if L.path != NULL:
        free(L.path)
    L.path = path
    L.dst_addr = addr
    L.dst_port = port
    L.redirects += 1
    s.redirected += 1
    connect_listener(s, i)


cdef void read_head(Swarm *s, int i, int64_t now) noexcept nogil:
    cdef Listener *L = &s.ls[i]
    cdef ssize_t r = recv(L.fd, L.head + L.head_len, HEAD_MAX - L.head_len, 0)
    cdef int end, status
    if r < 0 and would_block():
        return
    if r <= 0:
        fail(s, L, F_CLOSED)
        return
    L.head_len += <int32_t>r
    end = find_head_end(L.head, L.head_len)
    if end < 0:
        if L.head_len >= HEAD_MAX:
            fail(s, L, F_BAD_HEAD)
        return
    status = parse_status(L.head, end)
    if status < 0:
        fail(s, L, F_BAD_HEAD)
        return
    s.status_counts[status] += 1
    if status == 301 or status == 302 or status == 303 or status == 307:
        follow_redirect(s, i, end)
    elif status != 200:
        fail(s, L, F_STATUS)
    else:
        s.head_time[hist_index_c((mono_ns() - L.t_socket) // 1000)] += 1
        start_body(s, i, end, now)


cdef void read_fast(Swarm *s, Listener *L, int64_t now) noexcept nogil:
    cdef ssize_t r = recv(L.fd, s.buf, READ_CHUNK, 0)
    if r > 0:
        on_body(s, L, s.buf, <size_t>r, now)
    elif r == 0 or not would_block():
        drop(s, L, now)


cdef void read_paced(Swarm *s, Listener *L, int64_t now) noexcept nogil:
    """Read what the token bucket allows: at most the player buffer (prebuffer, or one
    second's worth) is saved up."""
    cdef ssize_t r
    cdef int64_t want
    cdef int64_t cap = s.prebuffer if s.prebuffer > s.read_rate else s.read_rate
    L.tokens += <int64_t>(<double>s.read_rate * (now - L.t_tokens) / 1e9)
    L.t_tokens = now
    if L.tokens > cap:
        L.tokens = cap
    while L.tokens > 0:
        want = L.tokens if L.tokens < READ_CHUNK else READ_CHUNK
        r = recv(L.fd, s.buf, <size_t>want, 0)
        if r > 0:
            L.tokens -= r
            on_body(s, L, s.buf, <size_t>r, now)
            if r < want:
                return          # drained the socket: skip the EAGAIN round trip
        elif r == 0 or not would_block():
            drop(s, L, now)
            return
        else:
            return


cdef void service_paced(Swarm *s, int64_t now) noexcept nogil:
    cdef int i
    cdef Listener *L
    while s.q_len > 0 and s.due[s.q_head] <= now:
        i = s.queue[s.q_head]
        s.q_head = (s.q_head + 1) % s.n
        s.q_len -= 1
        L = &s.ls[i]
        L.queued = 0
        if L.state != L_BODY:
            continue
        read_paced(s, L, now)
        if L.state == L_BODY:
            queue_push(s, i, now + s.read_interval)


cdef void sweep(Swarm *s, int64_t now) noexcept nogil:
    """Time out slow heads; count a stall when a listener got nothing for stall_after;
    reconnect the listeners whose wait is over."""
    cdef int i
    cdef Listener *L
    for i in range(s.next_open):
        L = &s.ls[i]
        if L.state == L_WAIT:
            if now >= L.t_reopen:
                s.reconnects += 1
                open_listener(s, i, now)
        elif L.state == L_CONNECTING or L.state == L_HEAD:
            if now - L.t_open > s.connect_timeout:
                fail(s, L, F_CONNECT_TIMEOUT if L.state == L_CONNECTING else F_HEAD_TIMEOUT)
        elif L.state == L_BODY and not L.stalled and now - L.t_last_rx > s.stall_after:
            L.stalled = 1
            s.stalls += 1


cdef void report_progress(Swarm *s, int64_t now) noexcept nogil:
    cdef char line[256]
    cdef int n
    if s.progress_fd < 0:
        return
    n = snprintf(line, sizeof(line), b"P %lld %llu %llu %llu %llu %llu %llu\n",
                 <long long>((now - s.t0) // 1000000), <unsigned long long>s.opened,
                 <unsigned long long>s.established, <unsigned long long>s.failed,
                 <unsigned long long>s.dropped, <unsigned long long>s.counts.body_bytes,
                 <unsigned long long>s.stalls)
    if n > 0:
        write(s.progress_fd, line, n)


cdef int64_t next_wakeup(Swarm *s, int64_t next_sweep) noexcept nogil:
    cdef int64_t t = s.t_end
    if s.next_open < s.n and arrival_time(s, s.next_open) < t:
        t = arrival_time(s, s.next_open)
    if s.q_len > 0 and s.due[s.q_head] < t:
        t = s.due[s.q_head]
    if s.churn_interval > 0 and s.next_churn < t:
        t = s.next_churn
    return next_sweep if next_sweep < t else t


cdef void dispatch(Swarm *s, epoll_event *events, int nev, int64_t now) noexcept nogil:
    cdef int k, i
    cdef Listener *L
    for k in range(nev):
        i = <int>events[k].data.u32
        L = &s.ls[i]
        if L.state == L_CONNECTING:
            send_request(s, i, events[k].events)
        elif L.state == L_HEAD:
            read_head(s, i, now)
        elif L.state == L_BODY and s.read_rate == 0:
            read_fast(s, L, now)


cdef void finish(Swarm *s, int64_t now) noexcept nogil:
    cdef int i
    cdef Listener *L
    for i in range(s.next_open):
        L = &s.ls[i]
        if L.state == L_BODY and L.stalled:
            s.stall_ns += now - L.t_last_rx
        release(L)
        if L.path != NULL:
            free(L.path)
            L.path = NULL


cdef int run_loop(Swarm *s) noexcept nogil:
    """Run the swarm until t_end; return 0, or -1 if epoll_wait failed."""
    cdef epoll_event events[MAX_EVENTS]
    cdef int64_t now = mono_ns(), next_sweep = s.t0 + C_SWEEP_NS
    cdef int64_t next_progress = s.t0 + PROGRESS_NS, wake
    cdef int nev, timeout_ms
    while now < s.t_end:
        open_due(s, now)
        service_paced(s, now)
        if now >= next_sweep:
            sweep(s, now)
            next_sweep = now + C_SWEEP_NS
        if now >= next_progress:
            report_progress(s, now)
            next_progress += PROGRESS_NS
        if s.churn_interval > 0 and now >= s.next_churn:
            churn(s, now)
            s.next_churn += s.churn_interval
        wake = next_wakeup(s, next_sweep)
        timeout_ms = <int>((wake - now + 999999) // 1000000) if wake > now else 0
        nev = epoll_wait(s.ep, events, MAX_EVENTS, timeout_ms)
        if nev < 0 and errno != EINTR:
            return -1
        now = mono_ns()
        if nev > 0:
            dispatch(s, events, nev, now)
    finish(s, now)
    return 0


# ---------------------------------------------------------------------------------
# Python API

_FAIL_NAMES = ("socket", "connect", "connect_timeout", "head_timeout", "closed", "bad_head",
               "status", "redirect")
_COUNT_NAMES = ("body_bytes", "audio_bytes", "verified_bytes", "frames_ok", "corrupt_frames",
                "gaps", "missing_frames", "duplicates", "resyncs", "skipped_bytes",
                "icy_blocks", "icy_errors")


cdef dict counts_dict(Counts *c):
    cdef uint64_t *values = <uint64_t *>c
    return {name: values[k] for k, name in enumerate(_COUNT_NAMES)}


cdef list hist_list(uint64_t *h):
    return [h[k] for k in range(HIST_SIZE)]


def frame_template():
    """Return the compiled frame template (to check it against payload.TEMPLATE)."""
    return bytes((<char *>TEMPLATE)[:FRAME_SIZE])


def hist_index(long long value_us):
    """Return the histogram bucket of ``value_us`` (twin of payload.hist_index)."""
    return hist_index_c(value_us)


def fill_frames(unsigned char[::1] buf not None, unsigned long long first,
                unsigned long long stamp):
    """Write consecutive frames from counter ``first`` into ``buf``; return their count."""
    cdef Py_ssize_t k, count = buf.shape[0] // FRAME_SIZE
    if count == 0:
        return 0
    with nogil:
        for k in range(count):
            write_frame(&buf[k * FRAME_SIZE], first + <uint64_t>k, stamp)
    return count


cdef class StreamVerifier:
    """The compiled verifier of one listener's body (twin of payload.StreamVerifier)."""

    cdef Verifier v
    cdef Counts c
    cdef uint64_t hist[HIST_SIZE]

    def __init__(self, int metaint=0):
        verifier_init(&self.v, metaint)
        memset(&self.c, 0, sizeof(Counts))
        memset(self.hist, 0, sizeof(self.hist))

    def feed(self, const unsigned char[::1] data not None, long long now_ns):
        """Account for ``data`` received at ``now_ns`` (CLOCK_MONOTONIC)."""
        if data.shape[0]:
            verifier_feed(&self.v, &data[0], data.shape[0], now_ns, &self.c, self.hist)

    def errors(self):
        """Return the number of error events (corrupt, gap, duplicate, ICY)."""
        return self.c.corrupt_frames + self.c.gaps + self.c.duplicates + self.c.icy_errors

    @property
    def counts(self):
        return counts_dict(&self.c)

    @property
    def latency_hist(self):
        return hist_list(self.hist)


cdef uint32_t parse_ipv4(str text) except? 0:
    cdef uint32_t addr = 0
    cdef bytes raw = text.encode()
    if inet_pton(AF_INET, raw, &addr) != 1:
        raise ValueError(f"not an IPv4 address: {text!r}")
    return addr


cdef int configure(Swarm *s, dict config) except -1:
    """Fill ``s`` from ``config`` and allocate its arrays; raise on bad input."""
    cdef int64_t now = mono_ns()
    s.n = config["listeners"]
    s.index_offset = config.get("index_offset", 0)
    s.index_stride = config.get("index_stride", 1)
    s.arrival_rate = config.get("arrival_rate", 0.0)
    s.t0 = config.get("t0_ns") or now
    s.t_end = s.t0 + <int64_t>(config["duration"] * 1e9)
    s.read_rate = config.get("read_rate", 0)
    s.prebuffer = config.get("prebuffer", 0)
    s.read_interval = <int64_t>(config.get("read_interval", 0.25) * 1e9)
    s.stall_after = <int64_t>(config.get("stall_after", 1.0) * 1e9)
    s.connect_timeout = <int64_t>(config.get("connect_timeout", 10.0) * 1e9)
    s.icy = 1 if config.get("icy") else 0
    s.dst_addr = parse_ipv4(config["host"])
    if (ntohl(s.dst_addr) >> 24) != 127:
        raise ValueError("the swarm only connects to 127.0.0.0/8")
    s.dst_port = htons(<uint16_t>config["port"])
    s.progress_fd = config.get("progress_fd", -1)
    s.n_src = len(config.get("src_addrs", ()))
    if s.n < 1 or s.index_stride < 1:
        raise ValueError("listeners and index_stride must be >= 1")
    churn_rate = config.get("churn_rate", 0.0)
    if churn_rate > 0:  # the global rate, shared by the processes like the arrivals
        s.churn_interval = <int64_t>(1e9 * s.index_stride / churn_rate)
        s.next_churn = s.t0 + s.churn_interval
    s.reconnect_after = <int64_t>(config.get("reconnect_after", 0.0) * 1e9)
    configure_paths(s, config["paths"])
    s.ls = <Listener *>calloc(s.n, sizeof(Listener))
    s.queue = <int32_t *>calloc(s.n, sizeof(int32_t))
    s.due = <int64_t *>calloc(s.n, sizeof(int64_t))
    s.buf = <uint8_t *>malloc(READ_CHUNK)
    s.src_addrs = <uint32_t *>calloc(s.n_src + 1, sizeof(uint32_t))
    if s.ls == NULL or s.queue == NULL or s.due == NULL or s.buf == NULL or s.src_addrs == NULL:
        raise MemoryError()
    for k, text in enumerate(config.get("src_addrs", ())):
        s.src_addrs[k] = parse_ipv4(text)
    for k in range(s.n):
        s.ls[k].fd = -1
    s.ep = epoll_create1(EPOLL_CLOEXEC)
    if s.ep < 0:
        raise OSError(errno, "epoll_create1 failed")
    return 0


cdef int configure_paths(Swarm *s, list paths) except -1:
    """Copy the mount paths into C strings (freed by release_swarm)."""
    cdef bytes raw
    if not paths:
        raise ValueError("the swarm needs at least one path")
    s.paths = <char **>calloc(len(paths), sizeof(char *))
    if s.paths == NULL:
        raise MemoryError()
    s.n_paths = len(paths)
    for k, path in enumerate(paths):
        raw = path.encode()
        s.paths[k] = <char *>malloc(len(raw) + 1)
        if s.paths[k] == NULL:
            raise MemoryError()
        memcpy(s.paths[k], <char *>raw, len(raw) + 1)
    return 0


cdef void release_swarm(Swarm *s) noexcept:
    cdef int k
    free(s.ls)
    free(s.queue)
    free(s.due)
    free(s.buf)
    free(s.src_addrs)
    if s.paths != NULL:
        for k in range(s.n_paths):
            free(s.paths[k])
        free(s.paths)
    if s.ep >= 0:
        close(s.ep)


cdef dict results(Swarm *s, int64_t t_stop):
    held = sum(1 for k in range(s.next_open) if s.ls[k].state == L_BODY)
    pending = sum(1 for k in range(s.next_open)
                  if s.ls[k].state == L_CONNECTING or s.ls[k].state == L_HEAD)
    return {
        "listeners": s.n, "opened": s.opened, "established": s.established,
        "failed": s.failed, "dropped": s.dropped, "held": held, "pending": pending,
        "redirected": s.redirected, "error_listeners": s.error_listeners,
        "cut_errors": s.cut_errors, "cut_error_listeners": s.cut_error_listeners,
        "churned": s.churned, "reconnects": s.reconnects,
        "stalls": s.stalls, "stall_seconds": s.stall_ns / 1e9,
        "elapsed": (t_stop - s.t0) / 1e9,
        "fail_reasons": {name: s.fail_reasons[k] for k, name in enumerate(_FAIL_NAMES)
                         if s.fail_reasons[k]},
        "status_counts": {str(k): s.status_counts[k] for k in range(STATUS_CODES)
                          if s.status_counts[k]},
        "counts": counts_dict(&s.counts),
        "ttfb_hist": hist_list(s.ttfb), "ttfb_loop_hist": hist_list(s.ttfb_loop),
        "open_lag_hist": hist_list(s.open_lag), "connect_hist": hist_list(s.connect_time),
        "head_hist": hist_list(s.head_time), "latency_hist": hist_list(s.latency),
    }


def run(dict config not None):
    """Run one swarm process's listeners; return its totals as a dict.

    ``config``: host, port, paths (listener k reads ``paths[global index % len]``),
    listeners, duration (s); optional t0_ns (CLOCK_MONOTONIC start),
    index_offset/index_stride (this process's share of the global arrival order),
    arrival_rate (listeners/s over all processes, 0 = at once), read_rate (bytes/s, 0 =
    as fast as possible), read_interval, stall_after, connect_timeout (s), icy (bool),
    churn_rate (connections/s over all processes closed and opened anew, 0 = none),
    reconnect_after (s before a dropped or failed listener reconnects, 0 = never),
    src_addrs (list of 127.x addresses), progress_fd.
    Raises ValueError on a bad config, OSError if epoll cannot be created.
    """
    cdef Swarm s
    cdef int rc
    memset(&s, 0, sizeof(Swarm))
    s.ep = -1
    try:
        configure(&s, config)
        with nogil:
            rc = run_loop(&s)
        if rc != 0:
            raise OSError(errno, "epoll_wait failed")
        return results(&s, mono_ns())
    finally:
        release_swarm(&s)
