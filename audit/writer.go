package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store appends batches of entries to the log.
type Store interface {
	// AppendBatch links the entries after the chain head and stores them in
	// one transaction, serialised with every other writer (on any replica).
	// An entry whose request_jti its agency used before is not stored; its
	// index is returned in replayed. On error no entry is reported stored,
	// and none may be disclosed; when the connection failed after the
	// commit was sent, they may be in the log all the same (the next
	// append reads the head again).
	AppendBatch(ctx context.Context, entries []*Entry) (replayed []int, err error)
}

// Errors an append returns.
var (
	// ErrReplayed: the request's token id was used before (on any replica).
	ErrReplayed = errors.New("audit: token id was already used")
	// ErrUnavailable: the entry could not be committed; disclose nothing.
	ErrUnavailable = errors.New("audit: the log is unavailable")
	// ErrRejected: the log cannot store this entry (a value it cannot
	// hold, such as a NUL character); the entry was not committed. A Store
	// wraps it around such errors, so the writer can tell them from an
	// unavailable database.
	ErrRejected = errors.New("audit: the entry cannot be stored")
)

// Writer group-commits entries: concurrent Appends are gathered into one
// transaction, and each caller returns only after its entry committed. The
// queue is bounded; a caller that finds it full waits up to QueueWait and then
// gets ErrUnavailable. An entry is never dropped silently: each caller learns
// whether its entry committed.
type Writer struct {
	store         Store
	maxBatch      int
	queueWait     time.Duration
	commitTimeout time.Duration
	log           *slog.Logger
	metrics       *writerMetrics

	queue  chan *pending
	mu     sync.RWMutex // held for reading while enqueueing; for writing by Close
	done   chan struct{}
	stop   chan struct{}
	close  sync.Once
	closed bool
}

type pending struct {
	entry  *Entry
	result chan error
}

// WriterConfig tunes a Writer; zero values take the defaults.
type WriterConfig struct {
	MaxBatch      int           // entries per transaction; default 512
	QueueSize     int           // entries waiting; default 8192
	QueueWait     time.Duration // how long Append waits for room; default 2 s
	CommitTimeout time.Duration // one batch's transaction; default 5 s
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: no metrics
}

// NewWriter starts a writer's commit loop. Close stops it.
func NewWriter(store Store, cfg WriterConfig) *Writer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = 2 * time.Second
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		store: store, maxBatch: cfg.MaxBatch, queueWait: cfg.QueueWait, commitTimeout: cfg.CommitTimeout,
		log: cfg.Logger.With("subsystem", "audit"), metrics: newWriterMetrics(cfg.Registerer),
		queue: make(chan *pending, cfg.QueueSize), done: make(chan struct{}), stop: make(chan struct{}),
	}
	go w.loop()
	return w
}

// Append commits e and returns where it landed. Errors: ErrReplayed,
// ErrUnavailable.
func (w *Writer) Append(ctx context.Context, e *Entry) (Receipt, error) {
	if err := e.Storable(); err != nil {
		w.metrics.result("rejected")
		return Receipt{}, err
	}
	p := &pending{entry: e, result: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		w.metrics.result("closed")
		return Receipt{}, ErrUnavailable
	}
	select {
	case w.queue <- p:
	default:
		t := time.NewTimer(w.queueWait)
		select {
		case w.queue <- p:
			t.Stop()
		case <-t.C:
			w.mu.RUnlock()
			w.metrics.result("queue_full")
			w.log.Error("audit queue full: refusing the request", "wait", w.queueWait)
			return Receipt{}, ErrUnavailable
		case <-ctx.Done():
			t.Stop()
			w.mu.RUnlock()
			w.metrics.result("canceled")
			return Receipt{}, ErrUnavailable
		}
	}
	w.mu.RUnlock()
	// Wait for the outcome even if ctx ends: the entry may commit, and the
	// caller must not act as if it did not (nor the reverse).
	if err := <-p.result; err != nil {
		return Receipt{}, err
	}
	return e.Receipt(), nil
}

// Queued is how many entries wait for a batch (for tests and metrics).
func (w *Writer) Queued() int { return len(w.queue) }

// Close commits what is queued and stops the loop.
func (w *Writer) Close() {
	w.close.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		<-w.done
	})
}

func (w *Writer) loop() {
	defer close(w.done)
	batch := make([]*pending, 0, w.maxBatch)
	for {
		var first *pending
		select {
		case first = <-w.queue:
		case <-w.stop:
			// No more Appends can enqueue: drain what is left, in batches.
			for {
				batch = batch[:0]
			drain:
				for len(batch) < w.maxBatch {
					select {
					case p := <-w.queue:
						batch = append(batch, p)
					default:
						break drain
					}
				}
				if len(batch) == 0 {
					return
				}
				w.commit(batch)
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < w.maxBatch {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

func (w *Writer) commit(batch []*pending) {
	entries := make([]*Entry, len(batch))
	for i, p := range batch {
		entries[i] = p.entry
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.commitTimeout)
	start := time.Now()
	replayed, err := w.store.AppendBatch(ctx, entries)
	cancel()
	w.metrics.observe(len(batch), time.Since(start))
	if err != nil && errors.Is(err, ErrRejected) && len(batch) > 1 {
		// One entry the log cannot store must not fail everybody else's:
		// commit each entry on its own, so only the bad one fails.
		w.log.Warn("audit batch rejected an entry: committing its entries one by one", "entries", len(batch))
		for _, p := range batch {
			w.commit([]*pending{p})
		}
		return
	}
	if err != nil {
		w.log.Error("audit batch failed: refusing its requests", "entries", len(batch), "err", err)
		for _, p := range batch {
			if errors.Is(err, ErrRejected) {
				w.metrics.result("rejected")
				p.result <- fmt.Errorf("append audit entry: %w", err)
				continue
			}
			w.metrics.result("failed")
			p.result <- fmt.Errorf("append audit batch of %d: %w", len(batch), errors.Join(ErrUnavailable, err))
		}
		return
	}
	isReplay := make(map[int]bool, len(replayed))
	for _, i := range replayed {
		isReplay[i] = true
	}
	for i, p := range batch {
		if isReplay[i] {
			w.metrics.result("replayed")
			p.result <- ErrReplayed
			continue
		}
		w.metrics.result("committed")
		p.result <- nil
	}
}

type writerMetrics struct {
	batch   prometheus.Histogram
	latency prometheus.Histogram
	results *prometheus.CounterVec
}

func newWriterMetrics(reg prometheus.Registerer) *writerMetrics {
	m := &writerMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "varsel_audit_batch_entries", Help: "Entries per group-committed audit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "varsel_audit_commit_seconds", Help: "Duration of one audit batch transaction.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5},
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "varsel_audit_appends_total", Help: "Audit appends by outcome (committed, replayed, rejected, failed, queue_full, canceled, closed).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.batch, m.latency, m.results)
	}
	return m
}

func (m *writerMetrics) observe(n int, d time.Duration) {
	m.batch.Observe(float64(n))
	m.latency.Observe(d.Seconds())
}

func (m *writerMetrics) result(r string) { m.results.WithLabelValues(r).Inc() }
