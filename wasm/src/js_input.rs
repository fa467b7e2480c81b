//! What JavaScript passes in, checked. Every argument of the JS API arrives as a `JsValue`
//! (the generated glue converts nothing, so it can neither trap nor coerce), and is
//! refused here with an `InvalidInput` error naming the argument and what it was.

use std::time::Duration;

use eventkv::{Codec, EventMetadata, NewEvent, Upcasters, Uuid};
use js_sys::{Array, Function, JSON, JsString, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::indexeddb::Durability;
use crate::js_error::ApiError;

/// The largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
/// The fields of a `NewEvent`.
const EVENT_FIELDS: [&str; 6] = [
    "type",
    "data",
    "shapeVersion",
    "eventId",
    "correlationId",
    "causationId",
];
/// The fields of a `NewSnapshot`.
const SNAPSHOT_FIELDS: [&str; 5] = [
    "aggregateType",
    "aggregateId",
    "version",
    "schemaVersion",
    "state",
];

/// A short, one-line description of a JS value, for error messages.
pub fn describe(value: &JsValue) -> String {
    if value.is_undefined() {
        "undefined".into()
    } else if value.is_null() {
        "null".into()
    } else if let Some(flag) = value.as_bool() {
        format!("the boolean {flag}")
    } else if let Some(number) = value.as_f64() {
        format!("the number {number}")
    } else if let Some(text) = value.dyn_ref::<JsString>() {
        let text: String = text.into();
        let mut shown: String = text.chars().take(40).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        format!("the string {shown:?}")
    } else if value.is_bigint() {
        "a BigInt".into()
    } else if value.is_symbol() {
        "a Symbol".into()
    } else if value.is_function() {
        "a function".into()
    } else if Array::is_array(value) {
        "an array".into()
    } else {
        "an object".into()
    }
}

fn missing_or(argument: &str, value: &JsValue, expected: &str) -> ApiError {
    if value.is_undefined() {
        ApiError::invalid(format!("{argument} is missing: it must be {expected}"))
    } else {
        ApiError::invalid(format!(
            "{argument} must be {expected}, not {}",
            describe(value)
        ))
    }
}

/// A string that is valid Unicode: a lone surrogate would be replaced on the way to
/// UTF-8, so two different JS strings would name the same stream.
pub fn string(argument: &str, value: &JsValue) -> Result<String, ApiError> {
    let Some(text) = value.dyn_ref::<JsString>() else {
        return Err(missing_or(argument, value, "a string"));
    };
    let decoded = String::from(text);
    // A lone surrogate decodes as U+FFFD: only then are the UTF-16 units looked at.
    if decoded.contains(char::REPLACEMENT_CHARACTER) {
        let mut unit = 0;
        for found in char::decode_utf16(text.iter()) {
            match found {
                Ok(found) => unit += found.len_utf16(),
                Err(lone) => {
                    return Err(ApiError::invalid(format!(
                        "{argument} is not valid Unicode: a lone surrogate \\u{:X} at index {unit} cannot be stored",
                        lone.unpaired_surrogate()
                    )));
                }
            }
        }
    }
    Ok(decoded)
}

/// A JS number that is a whole number from 0 to 2^53 - 1 (where JS numbers are exact);
/// `default` when the argument is left out (`undefined` or `null`), if it may be.
pub fn whole_number(
    argument: &str,
    value: &JsValue,
    default: Option<u64>,
) -> Result<u64, ApiError> {
    if let (Some(default), true) = (default, value.is_undefined() || value.is_null()) {
        return Ok(default);
    }
    const EXPECTED: &str = "a whole number from 0 to 2^53 - 1";
    let Some(number) = value.as_f64() else {
        return Err(missing_or(argument, value, EXPECTED));
    };
    if number.is_finite() && number >= 0.0 && number.fract() == 0.0 && number <= MAX_SAFE_INTEGER {
        // Checked above: a whole number in u64's range.
        Ok(number as u64)
    } else {
        Err(ApiError::invalid(format!(
            "{argument} must be {EXPECTED}, not {number}"
        )))
    }
}

/// A whole number that fits a `u32` (schema versions).
pub fn small_number(argument: &str, value: &JsValue) -> Result<u32, ApiError> {
    let number = whole_number(argument, value, None)?;
    u32::try_from(number).map_err(|_| {
        ApiError::invalid(format!(
            "{argument} must be at most {}, not {number}",
            u32::MAX
        ))
    })
}

/// `value` as JSON text, as `JSON.stringify` writes it, or one line saying why it cannot be.
pub fn json(argument: &str, value: &JsValue) -> Result<String, ApiError> {
    if value.is_undefined() {
        return Err(missing_or(argument, value, "a JSON value"));
    }
    let text = JSON::stringify(value).map_err(|thrown| {
        let why = thrown
            .dyn_ref::<js_sys::Error>()
            .map(|error| String::from(error.message()))
            .unwrap_or_default();
        let why = if why.contains("BigInt") {
            "a BigInt cannot be stored as JSON (convert it to a string or a number first)".into()
        } else if why.contains("circular") {
            "an object that contains itself cannot be stored as JSON".into()
        } else {
            let first_line = why.lines().next().unwrap_or("it threw").trim();
            format!("JSON.stringify refused it: {first_line}")
        };
        ApiError::invalid(format!("{argument}: {why}"))
    })?;
    text.as_string().ok_or_else(|| {
        ApiError::invalid(format!(
            "{argument} must be a JSON value, not {}",
            describe(value)
        ))
    })
}

/// A UUID string, or `None` when left out (`undefined` or `null`).
fn optional_uuid(argument: &str, value: &JsValue) -> Result<Option<Uuid>, ApiError> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let text = string(argument, value)?;
    Uuid::parse_str(&text).map(Some).map_err(|error| {
        ApiError::invalid(format!(
            "{argument} must be a UUID like \"0b4e4a4c-8d4f-4c8e-9a0e-6f1f2d3c4b5a\", not {}: {error}",
            describe(value)
        ))
    })
}

/// A plain object (not an array or a function) with only the `allowed` fields.
fn object(argument: &str, value: &JsValue, allowed: &[&str]) -> Result<Object, ApiError> {
    let shape = format!("an object {{ {} }}", allowed.join(", "));
    let Some(found) = value
        .dyn_ref::<Object>()
        .filter(|_| !Array::is_array(value) && !value.is_function())
    else {
        return Err(missing_or(argument, value, &shape));
    };
    for key in Object::keys(found).iter() {
        let key = key.as_string().unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::invalid(format!(
                "{argument} has an unknown field {key:?}: it must be {shape}"
            )));
        }
    }
    Ok(found.clone())
}

fn field(object: &Object, name: &str) -> JsValue {
    // Reading a property of a plain object fails only on a throwing getter or a Proxy:
    // that reads as absent, and is refused as missing.
    Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// The `events` argument of `append`: a non-empty array of `NewEvent`, JSON-encoded.
pub fn new_events(value: &JsValue) -> Result<Vec<NewEvent>, ApiError> {
    let Some(array) = value.dyn_ref::<Array>() else {
        return Err(missing_or("events", value, "an array of events"));
    };
    (0..array.length())
        .map(|index| new_event(&format!("events[{index}]"), &array.get(index)))
        .collect()
}

fn new_event(argument: &str, value: &JsValue) -> Result<NewEvent, ApiError> {
    let event = object(argument, value, &EVENT_FIELDS)?;
    let event_type = string(&format!("{argument}.type"), &field(&event, "type"))?;
    let data = json(&format!("{argument}.data"), &field(&event, "data"))?;
    let uuid = |name: &str| optional_uuid(&format!("{argument}.{name}"), &field(&event, name));
    let shape = shape_version(
        &format!("{argument}.shapeVersion"),
        &field(&event, "shapeVersion"),
    )?;
    Ok(NewEvent {
        event_id: uuid("eventId")?.unwrap_or_else(Uuid::new_v4),
        event_type,
        shape_version: shape,
        codec: Codec::Json,
        payload: data.into_bytes().into(),
        metadata: EventMetadata {
            correlation_id: uuid("correlationId")?,
            causation_id: uuid("causationId")?,
        },
    })
}

/// A shape version: a whole number from 1 (the default when left out).
fn shape_version(argument: &str, value: &JsValue) -> Result<u32, ApiError> {
    if value.is_undefined() || value.is_null() {
        return Ok(1);
    }
    match small_number(argument, value)? {
        0 => Err(ApiError::invalid(format!(
            "{argument} must be at least 1: shape versions start at 1"
        ))),
        shape => Ok(shape),
    }
}

/// The `upcasters` option of `open`: `[{ type, shapeVersion, upcast }]`, where
/// `upcast(data)` returns the events that replace one of that type and shape, an array of
/// `{ type, shapeVersion, data }` (none drops it, several split it).
fn upcasters(value: &JsValue) -> Result<Upcasters, ApiError> {
    const SHAPE: &str = "an array of { type, shapeVersion, upcast }";
    let Some(array) = value.dyn_ref::<Array>() else {
        return Err(missing_or("options.upcasters", value, SHAPE));
    };
    let mut upcasters = Upcasters::new();
    for index in 0..array.length() {
        let argument = format!("options.upcasters[{index}]");
        let entry = object(
            &argument,
            &array.get(index),
            &["type", "shapeVersion", "upcast"],
        )?;
        let event_type = string(&format!("{argument}.type"), &field(&entry, "type"))?;
        let shape_argument = format!("{argument}.shapeVersion");
        let shape = field(&entry, "shapeVersion");
        if shape.is_undefined() {
            return Err(missing_or(
                &shape_argument,
                &shape,
                "the shape version it reads",
            ));
        }
        let shape = shape_version(&shape_argument, &shape)?;
        let upcast = field(&entry, "upcast");
        let Some(upcast) = upcast.dyn_ref::<Function>().cloned() else {
            return Err(missing_or(
                &format!("{argument}.upcast"),
                &upcast,
                "a function (data) => [{ type, shapeVersion, data }]",
            ));
        };
        upcasters = upcasters.register(&event_type, shape, move |old: serde_json::Value, out| {
            let data = JSON::parse(&serde_json::to_string(&old)?).map_err(|thrown| {
                format!("the stored payload did not parse: {}", describe(&thrown))
            })?;
            let returned = upcast
                .call1(&JsValue::UNDEFINED, &data)
                .map_err(|thrown| format!("the upcaster threw {}", describe(&thrown)))?;
            let Some(events) = returned.dyn_ref::<Array>() else {
                return Err(format!(
                    "the upcaster must return an array of {{ type, shapeVersion, data }}, not {}",
                    describe(&returned)
                )
                .into());
            };
            for (index, event) in events.iter().enumerate() {
                let argument = format!("the upcaster's event {index}");
                let emitted = (|| {
                    let event = object(&argument, &event, &["type", "shapeVersion", "data"])?;
                    let event_type = string(&format!("{argument}.type"), &field(&event, "type"))?;
                    let shape = field(&event, "shapeVersion");
                    let shape = shape_version(&format!("{argument}.shapeVersion"), &shape)?;
                    let data = json(&format!("{argument}.data"), &field(&event, "data"))?;
                    Ok::<_, ApiError>((event_type, shape, data))
                })()
                .map_err(|error| error.message().to_owned())?;
                let (event_type, shape, data) = emitted;
                let data = serde_json::value::RawValue::from_string(data)?;
                out.emit(event_type, shape, data);
            }
            Ok(())
        });
    }
    Ok(upcasters)
}

/// A `NewSnapshot`, its state as JSON text.
pub struct NewSnapshot {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: u64,
    pub schema_version: u32,
    pub state: String,
}

/// The `snapshot` argument of `saveSnapshot`.
pub fn new_snapshot(value: &JsValue) -> Result<NewSnapshot, ApiError> {
    let snapshot = object("snapshot", value, &SNAPSHOT_FIELDS)?;
    let get = |name: &str| (format!("snapshot.{name}"), field(&snapshot, name));
    let (name, value) = get("aggregateType");
    let aggregate_type = string(&name, &value)?;
    let (name, value) = get("aggregateId");
    let aggregate_id = string(&name, &value)?;
    let (name, value) = get("version");
    let version = whole_number(&name, &value, None)?;
    let (name, value) = get("schemaVersion");
    let schema_version = small_number(&name, &value)?;
    let (name, value) = get("state");
    let state = json(&name, &value)?;
    Ok(NewSnapshot {
        aggregate_type,
        aggregate_id,
        version,
        schema_version,
        state,
    })
}

/// The `options` of `EventStore.open`, read.
pub struct OpenInput {
    pub durability: Durability,
    pub sync: Option<SyncInput>,
    pub upcasters: Upcasters,
}

/// The `sync` option of `EventStore.open`, read.
#[derive(Clone)]
pub struct SyncInput {
    /// The server's base URL, e.g. `http://127.0.0.1:7411`.
    pub url: String,
    /// The bearer token, if the server wants one.
    pub token: Option<String>,
    /// The app's conflict handler.
    pub rebase: Option<js_sys::Function>,
}

/// The `options` of `EventStore.open`: `{ durability, sync }`, strict and not synced when
/// left out.
pub fn open_options(value: &JsValue) -> Result<OpenInput, ApiError> {
    let mut input = OpenInput {
        durability: Durability::Strict,
        sync: None,
        upcasters: Upcasters::new(),
    };
    if value.is_undefined() || value.is_null() {
        return Ok(input);
    }
    let options = object("options", value, &["durability", "sync", "upcasters"])?;
    let durability = field(&options, "durability");
    if !durability.is_undefined() {
        let name = string("options.durability", &durability)?;
        input.durability = [
            Durability::Strict,
            Durability::Relaxed,
            Durability::BrowserDefault,
        ]
        .into_iter()
        .find(|known| known.as_str() == name)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "options.durability must be \"strict\", \"relaxed\" or \"default\", not {name:?}"
            ))
        })?;
    }
    let sync = field(&options, "sync");
    if !sync.is_undefined() {
        input.sync = Some(sync_options(&sync)?);
    }
    let upcast = field(&options, "upcasters");
    if !upcast.is_undefined() {
        input.upcasters = upcasters(&upcast)?;
    }
    Ok(input)
}

fn sync_options(value: &JsValue) -> Result<SyncInput, ApiError> {
    let sync = object("options.sync", value, &["url", "token", "rebase"])?;
    let url = string("options.sync.url", &field(&sync, "url"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::invalid(format!(
            "options.sync.url must be an http:// or https:// URL, not {url:?}"
        )));
    }
    let token = field(&sync, "token");
    let token = if token.is_undefined() || token.is_null() {
        None
    } else {
        Some(string("options.sync.token", &token)?)
    };
    let rebase = field(&sync, "rebase");
    let rebase = if rebase.is_undefined() || rebase.is_null() {
        None
    } else {
        Some(function("options.sync.rebase", &rebase)?)
    };
    Ok(SyncInput { url, token, rebase })
}

/// A function.
pub fn function(argument: &str, value: &JsValue) -> Result<js_sys::Function, ApiError> {
    value
        .dyn_ref::<js_sys::Function>()
        .cloned()
        .ok_or_else(|| missing_or(argument, value, "a function"))
}

/// The options of `subscribe`, read.
pub struct SubscribeInput {
    pub on_error: Option<js_sys::Function>,
    pub aggregate_type: Option<String>,
    pub poll_interval: Option<Duration>,
}

/// Reads `subscribe`'s `options`: `onError`, `aggregateType` and `pollInterval` (whole
/// milliseconds, 1 to 2^31 - 1), each optional.
pub fn subscribe_options(value: &JsValue) -> Result<SubscribeInput, ApiError> {
    let mut input = SubscribeInput {
        on_error: None,
        aggregate_type: None,
        poll_interval: None,
    };
    if value.is_undefined() || value.is_null() {
        return Ok(input);
    }
    let options = object(
        "options",
        value,
        &["onError", "aggregateType", "pollInterval"],
    )?;
    let on_error = field(&options, "onError");
    if !on_error.is_undefined() {
        input.on_error = Some(function("options.onError", &on_error)?);
    }
    let aggregate_type = field(&options, "aggregateType");
    if !aggregate_type.is_undefined() {
        input.aggregate_type = Some(string("options.aggregateType", &aggregate_type)?);
    }
    let poll_interval = field(&options, "pollInterval");
    if !poll_interval.is_undefined() {
        let millis = whole_number("options.pollInterval", &poll_interval, None)?;
        let most = eventkv::MAX_POLL_INTERVAL.as_millis();
        if millis == 0 || u128::from(millis) > most {
            return Err(ApiError::invalid(format!(
                "options.pollInterval must be from 1 to {most} (milliseconds: the longest timer a browser keeps), not {millis}"
            )));
        }
        input.poll_interval = Some(Duration::from_millis(millis));
    }
    Ok(input)
}
