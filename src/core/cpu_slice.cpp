#include "core/cpu_slice.hpp"

namespace mext
{

bool CpuSlice::due(Clock::time_point now)
{
	if (slice_.count() <= 0)
		return false;
	if (!running_ || now < started_) { // first call, or a clock that went back: start a slice
		running_ = true;
		started_ = now;
		return false;
	}
	if (now - started_ < slice_)
		return false;
	started_ = now;
	return true;
}

} // namespace mext
