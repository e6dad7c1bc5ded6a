package fsm

// fifoChunkLen is how many elements one fifo chunk holds. Chunks, rather than
// one slice, so a queue of millions never copies itself to grow or to drop
// its front, and so a snapshot can share the chunks (see view).
const fifoChunkLen = 1024

// fifo is a queue in fixed-size chunks. An element is written once, by push,
// and never again: pop only moves the front. That is what lets a snapshot
// read a view of the queue while later applies push and pop.
type fifo[T any] struct {
	chunks [][]T  // each of capacity fifoChunkLen; only the last one has room
	head   int    // index of the front element in chunks[0]
	n      int    // elements queued
	popped uint64 // elements ever popped: the absolute index of the front
}

func (q *fifo[T]) len() int { return q.n }

// push appends v at the back and returns its absolute index.
func (q *fifo[T]) push(v T) uint64 {
	last := len(q.chunks) - 1
	if last < 0 || len(q.chunks[last]) == fifoChunkLen {
		q.chunks = append(q.chunks, make([]T, 0, fifoChunkLen))
		last++
	}
	q.chunks[last] = append(q.chunks[last], v)
	q.n++
	return q.popped + uint64(q.n) - 1
}

// front returns the oldest element; the queue must not be empty.
func (q *fifo[T]) front() T { return q.chunks[0][q.head] }

// pop drops the oldest element. It does not clear the slot: a snapshot view
// may still be reading it, and the chunk is freed whole once passed.
func (q *fifo[T]) pop() {
	if q.n == 0 {
		panic("fsm: pop from an empty queue")
	}
	q.head++
	q.n--
	q.popped++
	if q.head == fifoChunkLen {
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
}

// at returns the element with absolute index abs, which must be queued.
func (q *fifo[T]) at(abs uint64) T {
	if abs < q.popped || abs-q.popped >= uint64(q.n) {
		panic("fsm: queue index out of range")
	}
	i := q.head + int(abs-q.popped)
	return q.chunks[i/fifoChunkLen][i%fifoChunkLen]
}

// each calls fn on every element, oldest first, until fn returns false.
func (q *fifo[T]) each(fn func(T) bool) {
	for i := q.head; i < q.head+q.n; i++ {
		if !fn(q.chunks[i/fifoChunkLen][i%fifoChunkLen]) {
			return
		}
	}
}

// view returns a copy that reads the same elements and stays valid while q
// is pushed and popped: it shares the chunks but not the list of them, and
// q never rewrites an element the view can see.
func (q *fifo[T]) view() fifo[T] {
	v := *q
	v.chunks = append([][]T(nil), q.chunks...)
	return v
}
