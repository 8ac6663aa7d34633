// Parallel sweeps over the per-channel planes of a contiguous (B, C, *spatial) tensor, for
// kernels that reduce per channel and then transform with the result (batch norm).
//
// Every plane (b, c) of S = prod(spatial) elements is cut into pieces of at most
// kPieceElements; threads share the pieces, so the work splits for any B and C, one channel
// included. A piece is named by its channel c and its index i in [0, B * pieces) within the
// channel (batch-major), or by the item c * pieces_per_channel() + i.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/ArrayRef.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace ndops {

constexpr int64_t kPieceElements = 8192;  // a piece stays in L2 while it is worked on
constexpr int64_t kTaskElements = 16384;  // at least this much work per scheduled task

struct Planes {
  int64_t batch, channels, inner = 1, pieces, piece_len;

  explicit Planes(c10::IntArrayRef sizes) : batch(sizes[0]), channels(sizes[1]) {
    for (size_t d = 2; d < sizes.size(); ++d) inner *= sizes[d];
    pieces = std::max<int64_t>(1, (inner + kPieceElements - 1) / kPieceElements);
    piece_len = (inner + pieces - 1) / pieces;
  }
  int64_t values_per_channel() const { return batch * inner; }
  int64_t pieces_per_channel() const { return batch * pieces; }
  // Pieces per scheduled task: small planes are grouped so that a task is not too small.
  int64_t pieces_per_task() const {
    return std::max<int64_t>(1, kTaskElements / std::max<int64_t>(1, piece_len));
  }
  // Runs body(item, c, offset, length) for piece i of channel c.
  template <typename Body>
  void visit(int64_t c, int64_t i, const Body& body) const {
    const int64_t start = i % pieces * piece_len;
    body(c * pieces_per_channel() + i, c, (i / pieces * channels + c) * inner + start,
         std::min(piece_len, inner - start));
  }
};

// body(item, c, offset, length) for every piece of every channel, in parallel.
template <typename Body>
void for_each_piece(const Planes& p, const Body& body) {
  const int64_t per_channel = p.pieces_per_channel();
  at::parallel_for(0, p.channels * per_channel, p.pieces_per_task(),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t item = begin; item < end; ++item) {
                       p.visit(item / per_channel, item % per_channel, body);
                     }
                   });
}

// Channels per group such that a group's values, `bytes_per_value` each (all the tensors a
// sweep reads), stay in the last-level cache (32 MiB here) until their second sweep, with two
// groups in flight (see two_sweeps).
inline int64_t channels_per_group(const Planes& p, int64_t bytes_per_value) {
  constexpr int64_t kGroupBytes = int64_t{6} << 20;
  const int64_t channel_bytes = std::max<int64_t>(1, p.values_per_channel() * bytes_per_value);
  return std::clamp<int64_t>(kGroupBytes / channel_bytes, 1, std::max<int64_t>(1, p.channels));
}

// A reduction sweep then a transform sweep over every piece, per group of `group` channels:
// first(item, c, offset, length) on every piece of a group, then finish(c_begin, c_end) once,
// then second(item, c, offset, length) on every piece of the group; the group's data is still
// in cache for the second sweep, so DRAM sees it once.
//
// No barriers: workers take tasks from one counter in the order first(0), first(1),
// second(0), first(2), second(1), ... The worker completing a group's first sweep runs its
// finish; a worker reaching a second sweep whose group is unfinished waits (rare: one group of
// other work lies in between). With 2 cores shared with other processes, a barrier per group
// cost a scheduler time slice each (training backward ~10x slower). Deterministic: results
// depend on the item, never on which thread ran it.
template <typename First, typename Finish, typename Second>
void two_sweeps(const Planes& p, int64_t group, const First& first, const Finish& finish,
                const Second& second) {
  const int64_t per_channel = p.pieces_per_channel(), per_task = p.pieces_per_task();
  const int64_t groups = (p.channels + group - 1) / group;
  const auto channel_end = [&](int64_t g) { return std::min(p.channels, (g + 1) * group); };
  const auto group_pieces = [&](int64_t g) { return (channel_end(g) - g * group) * per_channel; };
  struct Stage {
    int64_t group;
    bool second;
    int64_t first_task;
  };
  std::vector<Stage> stages;
  int64_t tasks = 0;
  for (int64_t g = 0; g <= groups; ++g) {
    for (const bool second : {false, true}) {
      const int64_t target = second ? g - 1 : g;
      if (target < 0 || target >= groups) continue;
      stages.push_back({target, second, tasks});
      tasks += (group_pieces(target) + per_task - 1) / per_task;
    }
  }
  std::vector<std::atomic<int64_t>> pieces_done(groups);
  std::vector<std::atomic<bool>> finished(groups);
  std::atomic<int64_t> next_task{0};
  const auto work = [&] {
    for (int64_t task; (task = next_task.fetch_add(1, std::memory_order_relaxed)) < tasks;) {
      const Stage& stage = *(std::upper_bound(stages.begin(), stages.end(), task,
                                              [](int64_t t, const Stage& s) {
                                                return t < s.first_task;
                                              }) -
                             1);
      const int64_t g = stage.group, c_begin = g * group;
      const int64_t begin = (task - stage.first_task) * per_task;
      const int64_t end = std::min(group_pieces(g), begin + per_task);
      if (stage.second) {
        while (!finished[g].load(std::memory_order_acquire)) std::this_thread::yield();
      }
      for (int64_t k = begin; k < end; ++k) {
        if (stage.second) {
          p.visit(c_begin + k / per_channel, k % per_channel, second);
        } else {
          p.visit(c_begin + k / per_channel, k % per_channel, first);
        }
      }
      if (!stage.second && pieces_done[g].fetch_add(end - begin, std::memory_order_acq_rel) +
                                   (end - begin) == group_pieces(g)) {
        finish(c_begin, channel_end(g));
        finished[g].store(true, std::memory_order_release);
      }
    }
  };
  // One worker per thread; a lone worker (one thread, or inside a parallel region) runs the
  // tasks in order, which always finds every group finished before its second sweep.
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) work();
  });
}

}  // namespace ndops
