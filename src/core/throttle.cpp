#include "core/throttle.hpp"

#include <algorithm>
#include <cmath>

namespace mext {

void RateMeter::add(long rows, double seconds)
{
	samples_.push_back(Sample{rows, seconds});
}

double RateMeter::rows_per_second() const
{
	long rows = 0;
	double seconds = 0;
	for (const auto &sample : samples_) {
		rows += sample.rows;
		seconds += sample.seconds;
	}
	return seconds > 0 ? rows / seconds : 0.0;
}

Pause pace_for_rate_cap(std::optional<int> max_rows_per_second, long rows, double batch_ms)
{
	Pause pause;
	if (!max_rows_per_second || *max_rows_per_second <= 0 || rows <= 0)
		return pause;
	double budget_ms = 1000.0 * static_cast<double>(rows) / *max_rows_per_second;
	if (budget_ms <= batch_ms)
		return pause;
	pause.milliseconds = budget_ms - batch_ms;
	pause.reason = "rate cap " + std::to_string(*max_rows_per_second) + " rows/s";
	return pause;
}

double lock_backoff_ms(int attempt, double jitter)
{
	double base = 1000.0 * std::pow(2.0, std::max(0, attempt - 1));
	base = std::min(base, 60000.0);
	return base * (0.5 + 0.5 * std::clamp(jitter, 0.0, 1.0));
}

} // namespace mext
