// Reading a row SPI returned by column name, so that a query and the C++ that reads it cannot drift
// apart by position. Plain PostgreSQL calls (errors longjmp as usual); NULL reads as 0, false or the
// text's fallback unless asked.
#pragma once

#include <cstddef>
#include <cstdlib>

#include "pg/postgres_c.hpp"

extern "C" {
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
}

namespace mext::pg
{

class SpiRow
{
  public:
	explicit SpiRow(uint64 index = 0) : row_(SPI_tuptable->vals[index]), desc_(SPI_tuptable->tupdesc) {}

	bool is_null(const char *name) const
	{
		bool isnull;
		SPI_getbinval(row_, desc_, column(name), &isnull);
		return isnull;
	}
	bool boolean(const char *name) const { return DatumGetBool(binary(name)); }
	int int4(const char *name) const { return DatumGetInt32(binary(name)); }
	long int8(const char *name) const { return DatumGetInt64(binary(name)); }
	Oid oid(const char *name) const { return DatumGetObjectId(binary(name)); }
	// numeric or double precision alike, through the text form.
	double number(const char *name) const
	{
		char *text = SPI_getvalue(row_, desc_, column(name));
		return text ? std::strtod(text, nullptr) : 0.0;
	}
	// The text form into `out`, `fallback` for NULL.
	void text(const char *name, char *out, std::size_t size, const char *fallback) const
	{
		char *value = SPI_getvalue(row_, desc_, column(name));
		strlcpy(out, value ? value : fallback, size);
	}
	// The text form, palloc'd in the current memory context; nullptr for NULL.
	char *text(const char *name) const { return SPI_getvalue(row_, desc_, column(name)); }
	// The value itself, copied into the current memory context so that it outlives SPI_tuptable.
	Datum copy(const char *name, bool *isnull) const
	{
		int number = column(name);
		Datum value = SPI_getbinval(row_, desc_, number, isnull);
		if (*isnull)
			return Datum(0);
		Form_pg_attribute attribute = TupleDescAttr(desc_, number - 1);
		return datumCopy(value, attribute->attbyval, attribute->attlen);
	}

  private:
	int column(const char *name) const
	{
		int number = SPI_fnumber(desc_, name);
		if (number <= 0)
			elog(ERROR, "migration_ext: a query of the extension's returned no column \"%s\"", name);
		return number;
	}
	Datum binary(const char *name) const
	{
		bool isnull;
		Datum value = SPI_getbinval(row_, desc_, column(name), &isnull);
		return isnull ? Datum(0) : value;
	}

	HeapTuple row_;
	TupleDesc desc_;
};

} // namespace mext::pg
