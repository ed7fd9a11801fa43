# Declarations of the bench listener swarm (implementation: _swarm.pyx, built as
# fanout.bench._swarm; Cython pairs the two files by name). Every C extern the swarm
# uses is declared here and nowhere else.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EINTR
        EINPROGRESS
        EMFILE
        ENFILE


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clk_id, timespec *tp)


cdef extern from "<string.h>" nogil:
    void *memcpy(void *dest, const void *src, size_t n)
    void *memmove(void *dest, const void *src, size_t n)
    void *memset(void *s, int c, size_t n)
    int memcmp(const void *a, const void *b, size_t n)
    void *memchr(const void *s, int c, size_t n)
    size_t strlen(const char *s)


cdef extern from "<strings.h>" nogil:
    int strncasecmp(const char *a, const char *b, size_t n)


cdef extern from "<stdio.h>" nogil:
    int snprintf(char *buf, size_t size, const char *fmt, ...)


cdef extern from "<stdlib.h>" nogil:
    void *malloc(size_t size)
    void *calloc(size_t nmemb, size_t size)
    void free(void *ptr)


cdef extern from "<unistd.h>" nogil:
    ctypedef long ssize_t
    int close(int fd)
    ssize_t write(int fd, const void *buf, size_t count)


cdef extern from "<endian.h>" nogil:
    uint64_t le64toh(uint64_t v)
    uint64_t htole64(uint64_t v)
    uint32_t le32toh(uint32_t v)
    uint32_t htole32(uint32_t v)


cdef extern from * nogil:
    int __builtin_clzll(unsigned long long v)


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    enum:
        AF_INET
        SOCK_STREAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_ERROR
        MSG_NOSIGNAL
    int socket(int domain, int type, int protocol)
    int bind(int fd, const sockaddr *addr, socklen_t len)
    int connect(int fd, const sockaddr *addr, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    ssize_t recv(int fd, void *buf, size_t len, int flags)
    ssize_t send(int fd, const void *buf, size_t len, int flags)


cdef extern from "<netinet/in.h>" nogil:
    ctypedef uint32_t in_addr_t
    ctypedef uint16_t in_port_t
    struct in_addr:
        in_addr_t s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        in_port_t sin_port
        in_addr sin_addr
    enum:
        IPPROTO_IP
        IP_BIND_ADDRESS_NO_PORT
    uint16_t htons(uint16_t v)
    uint16_t ntohs(uint16_t v)
    uint32_t htonl(uint32_t v)
    uint32_t ntohl(uint32_t v)


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)


# --- the stream layout (payload.py is the reference; a test checks they agree) ---

cdef enum:
    FRAME_SIZE = 384
    MAGIC_AT = 21
    COUNTER_AT = 25
    STAMP_AT = 33
    CHECK_AT = 41
    FILLER_AT = 45
    HIST_SIZE = 640
    SUB_BUCKETS = 16


# Totals of one process (or one StreamVerifier); names match payload.COUNTERS.
cdef struct Counts:
    uint64_t body_bytes
    uint64_t audio_bytes
    uint64_t verified_bytes
    uint64_t frames_ok
    uint64_t corrupt_frames
    uint64_t gaps
    uint64_t missing_frames
    uint64_t duplicates
    uint64_t resyncs
    uint64_t skipped_bytes
    uint64_t icy_blocks
    uint64_t icy_errors


# One listener's ICY layer + frame layer (see payload.py for the theory of operation).
cdef struct Verifier:
    int32_t metaint
    int32_t audio_left
    int32_t meta_left         # -1: in audio; 0: length byte next; >0: block bytes left
    int32_t meta_pos
    uint8_t meta_bad
    uint8_t locked
    uint8_t started
    uint8_t bad_run
    uint8_t slack             # frames excused after a resync
    uint32_t errors           # error events of this listener
    uint32_t fill             # bytes held in frame[]
    uint64_t expected
    uint8_t frame[FRAME_SIZE]


# Where a listener is in its life.
cdef enum ListenerState:
    L_IDLE            # not opened yet
    L_CONNECTING      # connect() in progress
    L_HEAD            # request sent, reading the response head
    L_BODY            # 200 received, reading the stream
    L_DONE            # ended by the server (dropped) or at the end of the run
    L_FAILED          # never got a 200
    L_WAIT            # closed, reconnecting at t_reopen (reconnect_after > 0)


# Why a listener failed (index into Swarm.fail_reasons).
cdef enum FailReason:
    F_SOCKET          # socket() or bind() failed (fd limit, ports)
    F_CONNECT         # connect refused / reset
    F_CONNECT_TIMEOUT # connect() not completed within the connect timeout
    F_HEAD_TIMEOUT    # connected, but no complete head within the connect timeout
    F_CLOSED          # closed before a complete head
    F_BAD_HEAD        # unparsable or oversized head
    F_STATUS          # a status other than 200 (see status_counts)
    F_REDIRECT        # a second redirect, or a Location we cannot follow
    F_COUNT


cdef struct Listener:
    int fd
    uint8_t state
    uint8_t redirects
    uint8_t stalled
    uint8_t queued            # in the paced queue
    uint32_t mount            # index into Swarm.paths
    uint32_t dst_addr         # network order
    uint16_t dst_port         # network order
    int32_t head_len
    char *head                # malloc'd while in L_HEAD
    char *path                # malloc'd redirect path, NULL = Swarm.paths[mount]
    int64_t t_socket          # CLOCK_MONOTONIC just before socket(): where TTFB starts
    int64_t t_open            # the loop's clock when it opened the listener (the old TTFB start)
    int64_t t_first           # the loop's clock at the first body byte (0: none yet)
    int64_t t_reopen          # L_WAIT: when to reconnect
    int64_t t_last_rx
    int64_t t_tokens
    int64_t tokens
    int64_t rx                # body bytes received so far
    Verifier v


cdef enum:
    READ_CHUNK = 131072       # one recv() of a fast listener
    HEAD_MAX = 4096           # a response head larger than this is refused
    MAX_EVENTS = 1024
    STATUS_CODES = 600


# One swarm process: its configuration, listeners and totals.
cdef struct Swarm:
    int n                     # listeners of this process
    int index_offset          # global index of listener i = i * index_stride + index_offset
    int index_stride
    double arrival_rate       # listeners/s over all processes, 0 = all at once
    int64_t t0
    int64_t t_end
    int64_t read_rate         # bytes/s per listener, 0 = as fast as possible
    int64_t prebuffer         # a paced listener's player buffer: read at once, then refilled at read_rate
    int64_t read_interval     # ns between two reads of a paced listener
    int64_t stall_after       # ns without data that count as a stall
    int64_t connect_timeout   # ns from open to a complete head
    int icy
    uint32_t dst_addr
    uint16_t dst_port
    char **paths              # the mounts; listener i reads paths[global index % n_paths]
    int n_paths
    uint32_t *src_addrs
    int n_src
    int progress_fd
    int ep
    Listener *ls
    int next_open
    int32_t *queue            # paced listeners in due order (a ring)
    int64_t *due
    int q_head
    int q_len
    uint8_t *buf
    Counts counts
    uint64_t ttfb[HIST_SIZE]            # socket creation -> first body byte, clocks read at both events
    uint64_t ttfb_loop[HIST_SIZE]       # the same span on the loop's clock (how TTFB was measured before)
    uint64_t open_lag[HIST_SIZE]        # scheduled arrival -> socket creation (the swarm's own lag)
    uint64_t connect_time[HIST_SIZE]    # socket creation -> TCP connect complete (the kernel's handshake)
    uint64_t head_time[HIST_SIZE]       # socket creation -> the 200 response head read (the server's accept path)
    uint64_t latency[HIST_SIZE]
    uint64_t burst_latency[HIST_SIZE]   # latency of frames inside a listener's prebuffer (the burst: old by design)
    uint64_t opened
    uint64_t established
    uint64_t failed
    uint64_t dropped
    uint64_t redirected
    uint64_t stalls
    uint64_t stall_ns
    uint64_t error_listeners
    uint64_t cut_errors       # error events on connections the server closed (dropped)
    uint64_t cut_error_listeners
    int64_t churn_interval    # ns between two churns of this process, 0 = no churn
    int64_t next_churn
    int churn_cursor
    uint64_t churned          # connections closed by the swarm and opened anew
    int64_t reconnect_after   # ns after a drop or failure before reconnecting, 0 = never
    uint64_t reconnects
    uint64_t fail_reasons[F_COUNT]
    uint32_t status_counts[STATUS_CODES]
