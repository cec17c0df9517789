//! Parquet, transformed batch by batch: the footer is read first (by Range from the
//! upstream, see [`super::stream`]), the schema checked against the catalog's, then the
//! row groups are read in batches — only the columns that are not dropped, so a dropped
//! column is never fetched nor decoded — and written as row groups of at most
//! [`ROW_GROUP_ROWS`] rows, so memory stays flat whatever the file's size.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;

use super::tabular::TransformError;
use super::{Action, Plan};

/// Rows per row group written (and per batch read: 8192).
pub const ROW_GROUP_ROWS: usize = 65_536;
const BATCH_ROWS: usize = 8192;

fn source(e: impl std::fmt::Display) -> TransformError {
    TransformError::Source(format!("Parquet: {e}"))
}

/// The column names of a Parquet file on disk.
pub fn header_of_file(path: &Path) -> Result<Vec<String>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| format!("`{}` is not a readable Parquet file: {e}", path.display()))?;
    Ok(b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// One value of `a` at `i` as text; `None` for null. Types without a text form the
/// gateway knows cannot be transformed (the transfer fails).
fn text(a: &dyn Array, i: usize) -> Result<Option<String>, TransformError> {
    if a.is_null(i) {
        return Ok(None);
    }
    fn date(days: i64) -> String {
        time::Date::from_julian_day(i32::try_from(days + 2_440_588).unwrap_or(i32::MIN))
            .map_or_else(|_| String::new(), |d| d.to_string())
    }
    fn stamp(secs: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(
            |_| String::new(),
            |t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            },
        )
    }
    macro_rules! prim {
        ($t:ty) => {
            a.as_primitive_opt::<$t>().map(|p| p.value(i).to_string())
        };
    }
    let v = match a.data_type() {
        DataType::Utf8 => a.as_string_opt::<i32>().map(|s| s.value(i).to_string()),
        DataType::LargeUtf8 => a.as_string_opt::<i64>().map(|s| s.value(i).to_string()),
        DataType::Utf8View => a.as_string_view_opt().map(|s| s.value(i).to_string()),
        DataType::Boolean => a.as_boolean_opt().map(|b| b.value(i).to_string()),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::Date32 => a
            .as_primitive_opt::<Date32Type>()
            .map(|p| date(i64::from(p.value(i)))),
        DataType::Date64 => a
            .as_primitive_opt::<Date64Type>()
            .map(|p| date(p.value(i).div_euclid(86_400_000))),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => a
                .as_primitive_opt::<TimestampSecondType>()
                .map(|p| stamp(p.value(i))),
            TimeUnit::Millisecond => a
                .as_primitive_opt::<TimestampMillisecondType>()
                .map(|p| stamp(p.value(i).div_euclid(1_000))),
            TimeUnit::Microsecond => a
                .as_primitive_opt::<TimestampMicrosecondType>()
                .map(|p| stamp(p.value(i).div_euclid(1_000_000))),
            TimeUnit::Nanosecond => a
                .as_primitive_opt::<TimestampNanosecondType>()
                .map(|p| stamp(p.value(i).div_euclid(1_000_000_000))),
        },
        _ => None,
    };
    v.map(Some).ok_or_else(|| {
        TransformError::SchemaMismatch(format!(
            "a Parquet column of type {} cannot be transformed",
            a.data_type()
        ))
    })
}

/// The output schema: kept columns as they are, transformed ones as nullable strings.
fn output_schema(input: &ArrowSchema, plan: &Plan) -> ArrowSchema {
    let fields: Vec<Field> = plan
        .kept()
        .filter_map(|i| {
            let f = input.fields().get(i)?;
            Some(match plan.actions[i] {
                Action::Keep => f.as_ref().clone(),
                _ => Field::new(f.name(), DataType::Utf8, true),
            })
        })
        .collect();
    ArrowSchema::new(fields)
}

fn batch(
    b: &RecordBatch,
    plan: &Plan,
    out: &Arc<ArrowSchema>,
) -> Result<RecordBatch, TransformError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(out.fields().len());
    let mut buf = String::new();
    let mut scratch = plan.scratch();
    // `b` holds the kept columns only, in the file's order.
    for (j, i) in plan.kept().enumerate() {
        let a = b.column(j);
        if plan.actions[i] == Action::Keep {
            cols.push(a.clone());
            continue;
        }
        // Built in place: strings are read without a copy, and no value is allocated.
        let mut col = StringBuilder::with_capacity(a.len(), a.len() * 24);
        let strings = a.as_string_opt::<i32>();
        for r in 0..a.len() {
            if a.is_null(r) {
                col.append_null();
                continue;
            }
            buf.clear();
            match strings {
                Some(s) => plan.value(i, s.value(r), &mut buf, &mut scratch),
                None => match text(a.as_ref(), r)? {
                    Some(v) => plan.value(i, &v, &mut buf, &mut scratch),
                    None => {
                        col.append_null();
                        continue;
                    }
                },
            }
            col.append_value(&buf);
        }
        cols.push(Arc::new(col.finish()));
    }
    RecordBatch::try_new(out.clone(), cols).map_err(source)
}

/// Transforms the Parquet file `reader` reads into `out`. `checked` is called once the
/// footer was read and the schema compared (with the mismatch, if any), before any byte
/// is written.
pub fn transform<R, W>(
    reader: R,
    plan: &Plan,
    out: W,
    checked: impl FnOnce(Result<(), &TransformError>),
) -> Result<(), TransformError>
where
    R: ChunkReader + 'static,
    W: Write + Send,
{
    let builder = match ParquetRecordBatchReaderBuilder::try_new(reader) {
        Ok(b) => b,
        Err(e) => {
            let e = source(e);
            checked(Err(&e));
            return Err(e);
        }
    };
    let names: Vec<&str> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    if let Err(m) = plan.schema.check_header(&names) {
        let e = TransformError::SchemaMismatch(m);
        checked(Err(&e));
        return Err(e);
    }
    let out_schema = Arc::new(output_schema(builder.schema(), plan));
    checked(Ok(()));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(out, out_schema.clone(), Some(props)).map_err(source)?;
    let kept = ProjectionMask::roots(builder.parquet_schema(), plan.kept());
    let rows = builder
        .with_projection(kept)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(source)?;
    for b in rows {
        let b = b.map_err(source)?;
        writer
            .write(&batch(&b, plan, &out_schema)?)
            .map_err(source)?;
    }
    writer.close().map_err(source)?;
    Ok(())
}
