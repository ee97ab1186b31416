// Element copies between tensors of any strides and dtypes: the one primitive that contiguous(),
// to(dtype) and clone() are built on. Lives in tensor/ because views need it and tensor/ may not
// reach into ops/.
#pragma once

namespace tg {

class Tensor;

// dst and src have the same shape; each element is converted through f32 (i32 and u8 exactly).
void copy_strided(Tensor& dst, const Tensor& src);
void fill_strided(Tensor& dst, float value);

}  // namespace tg
