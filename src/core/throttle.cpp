#include "core/throttle.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mext
{

namespace
{

std::string fixed(double value, int decimals = 1)
{
	char buffer[64];
	std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
	return buffer;
}

Decision hold(std::string reason, double wait_ms)
{
	Decision d;
	d.hold = true;
	d.wait_ms = wait_ms;
	d.reason = std::move(reason);
	return d;
}

} // namespace

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

void LagClock::record(double now_s, std::uint64_t primary_lsn)
{
	if (!samples_.empty() && samples_.back().lsn == primary_lsn)
		return; // no new WAL: the older sample already says when the primary got here
	samples_.push_back(Sample{now_s, primary_lsn});
}

double LagClock::lag_seconds(double now_s, std::uint64_t replay_lsn) const
{
	// The earliest moment the primary was past the replayed position: WAL written since then waits.
	for (const auto &sample : samples_)
		if (sample.lsn > replay_lsn)
			return std::max(0.0, now_s - sample.at);
	return 0.0;
}

double LagClock::wal_bytes_per_second(double now_s, double window_s) const
{
	return units_per_second(now_s, window_s);
}

double LagClock::units_per_second(double now_s, double window_s) const
{
	// Samples are only recorded when the position moves, so the rate is over the time up to now: a burst
	// followed by silence fades as the silence grows.
	const Sample *first = nullptr;
	for (const auto &sample : samples_)
		if (sample.at >= now_s - window_s) {
			first = &sample;
			break;
		}
	if (!first || now_s <= first->at)
		return 0.0;
	return static_cast<double>(samples_.back().lsn - first->lsn) / (now_s - first->at);
}

ThrottleController::ThrottleController(ThrottleSettings settings, int initial_batch)
    : settings_(std::move(settings)), batch_size_(0)
{
	batch_size_ = clamp(initial_batch);
}

void ThrottleController::update_settings(const ThrottleSettings &settings)
{
	settings_ = settings;
	batch_size_ = clamp(batch_size_);
}

int ThrottleController::clamp(double size) const
{
	// Rounded down, so that growth never exceeds its factor.
	return static_cast<int>(std::clamp(std::floor(size), static_cast<double>(settings_.min_batch),
	                                   static_cast<double>(settings_.max_batch)));
}

Decision ThrottleController::before_batch(const Signals &signals)
{
	lag_clock_.record(signals.now_s, signals.wal_lsn);
	// The job's own commits are in the counter too: taken out as it counted them (kept from going back,
	// should the two counts be a commit apart), else as about one a batch.
	others_ = std::max(others_, signals.transactions - signals.own_transactions.value_or(0));
	transaction_clock_.record(signals.now_s, static_cast<std::uint64_t>(others_));
	const double own_tps = signals.own_transactions ? 0 : batches_per_s_;
	workload_tps_ = std::max(0.0, transaction_clock_.units_per_second(signals.now_s) - own_tps);
	if (!first_look_s_)
		first_look_s_ = signals.now_s;
	warming_up_ = signals.now_s - *first_look_s_ < settings_.workload_warmup_s;
	const double wait = settings_.check_interval_ms;

	// Signals that cannot be read are reported with whatever is decided, never fatal.
	std::string unreadable = signals.standbys_readable ? "" : "pg_stat_replication not visible";
	double worst = 0;
	std::string worst_name;
	for (const auto &standby : signals.standbys) {
		if (!standby.replay_lsn) {
			unreadable += (unreadable.empty() ? "" : ", ") + standby.name;
			continue;
		}
		double lag = lag_clock_.lag_seconds(signals.now_s, *standby.replay_lsn);
		if (lag > worst || worst_name.empty()) {
			worst = lag;
			worst_name = standby.name;
		}
	}
	auto decide = [&](Decision d) {
		if (!unreadable.empty())
			d.unreadable = "replica lag unreadable: " + unreadable;
		return d;
	};

	if (settings_.hold_on_vacuum && signals.vacuum_on_table)
		return decide(hold("vacuum running on the table", wait));

	if (settings_.max_active_backends > 0 && signals.active_backends > settings_.max_active_backends)
		return decide(hold("active backends " + std::to_string(signals.active_backends) + " > " +
		                       std::to_string(settings_.max_active_backends),
		                   wait));

	if (settings_.max_replica_lag_s > 0 && !worst_name.empty()) {
		// Hysteresis: pause above the limit, resume only below half of it, so the job does not flap.
		bool was_holding = lag_holding_;
		double limit = was_holding ? settings_.max_replica_lag_s / 2 : settings_.max_replica_lag_s;
		lag_holding_ = worst > limit;
		if (lag_holding_)
			return decide(hold(was_holding
			                       ? "replica lag " + fixed(worst) + " s on " + worst_name + " (resumes below " +
			                             fixed(limit, 2) + " s)"
			                       : "replica lag " + fixed(worst) + " s > " + fixed(limit) + " s on " + worst_name,
			                   wait));
	} else {
		lag_holding_ = false;
	}

	if (settings_.max_wal_bytes_per_s > 0) {
		double rate = lag_clock_.wal_bytes_per_second(signals.now_s);
		if (rate > settings_.max_wal_bytes_per_s)
			return decide(hold("WAL rate " + fixed(rate / 1048576.0) + " MB/s > " +
			                       fixed(settings_.max_wal_bytes_per_s / 1048576.0) + " MB/s",
			                   wait));
	}
	return decide(Decision{});
}

Pause ThrottleController::after_batch(long rows, double batch_ms, int blocked_sessions)
{
	batches_per_s_ = batch_ms > 0 ? 1000.0 / batch_ms : 0;
	Pause pause = size_next_batch(rows, batch_ms, blocked_sessions);
	const double duty = settings_.live_duty_cycle;
	if (duty > 0 && sharing()) {
		double share = batch_ms * (1 / duty - 1);
		if (share > pause.milliseconds) {
			pause.milliseconds = share;
			pause.reason = (warming_up_ ? std::string("sharing until the workload is measured")
			                            : "sharing with a live workload (" + fixed(workload_tps_, 0) + " tx/s)") +
			               ": working " + fixed(duty * 100, 0) + " % of the time";
		}
	}
	return pause;
}

bool ThrottleController::sharing() const
{
	return settings_.live_duty_cycle < 1 && (warming_up_ || workload_tps_ >= settings_.live_tps_threshold);
}

Pause ThrottleController::size_next_batch(long rows, double batch_ms, int blocked_sessions)
{
	const double target =
	    sharing() ? std::min(settings_.batch_target_ms, settings_.live_batch_target_ms) : settings_.batch_target_ms;
	if (blocked_sessions > 0) {
		batch_size_ = clamp(batch_size_ / 2.0);
		stable_ = 0;
		Pause rest = pace_for_rate_cap(settings_.max_rows_per_second, rows, batch_ms);
		if (rest.milliseconds < batch_ms) {
			rest.milliseconds = batch_ms;
			rest.reason = std::to_string(blocked_sessions) + " live session" + (blocked_sessions > 1 ? "s" : "") +
			              " waited on the batch's row locks";
		}
		return rest;
	}
	if (target > 0 && batch_ms > 2 * target) {
		batch_size_ = clamp(batch_size_ / 2.0);
		stable_ = 0;
	} else if (target > 0 && batch_ms > target) {
		batch_size_ = clamp(batch_size_ * std::max(0.5, target / batch_ms));
		stable_ = 0;
	} else if (target > 0 && rows >= batch_size_ && ++stable_ >= settings_.stable_batches) {
		double room = batch_ms > 0 ? target / batch_ms : settings_.grow_factor;
		batch_size_ = clamp(batch_size_ * std::min(settings_.grow_factor, room));
		stable_ = 0;
	}
	return pace_for_rate_cap(settings_.max_rows_per_second, rows, batch_ms);
}

void ThrottleController::after_lock_conflict()
{
	batch_size_ = clamp(batch_size_ / 2.0);
	stable_ = 0;
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

double ddl_backoff_ms(int attempt, double jitter)
{
	double base = std::min(100.0 * std::pow(2.0, std::max(0, attempt - 1)), 5000.0);
	return base * (0.5 + 0.5 * std::clamp(jitter, 0.0, 1.0));
}

} // namespace mext
