/* Small convolutions of the fast path on channels-last (N, H, W, C) tensors, for
   the CPU (nas_core.fast.build compiles this file, nas_core.fast.native calls it):
   depthwise convolutions, grouped 1x1 (pointwise) ones, 3x3 pools, and batch
   normalisation with batch statistics.

   At the CPU presets such a convolution has a few thousand pixels of 8 to 40
   channels: its arithmetic takes microseconds, and a general library call
   costs several times that before any of it runs. These loops do the same sums
   directly. Every kernel returns 0, or 1 when memory runs out (the caller then
   raises).

   Each kernel family is one file of ordinary C functions, written once over the
   element type scalar_t (and index_t, a max pool's taps, as wide as its values):
   typed.inc includes every family, and this file includes typed.inc twice, for
   float and for double. A name written FN(dw_forward) is dw_forward_f32 in the
   first and dw_forward_f64 in the second; compiler errors and debuggers point at
   the lines of the family's file. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the small helpers that must be inlined, so that their constant arguments (a kernel's width,
   a block's pixels) become the loops' own constants */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* float: every function's name ends in _f32 */
#define scalar_t float
#define index_t int32_t
#define FN(name) name##_f32
#include "typed.inc"

/* double: _f64 */
#define scalar_t double
#define index_t int64_t
#define FN(name) name##_f64
#include "typed.inc"
