//! The compiled proto must hold every element of the official client's contract
//! (`tests/fixtures/wire-contract.json`, a protobufjs descriptor) unchanged: messages, fields
//! (name, number, type, label, proto3 optional, maps), oneofs, enums and their values, service
//! methods. What we add must use new names and numbers, and never sit inside an existing oneof or
//! enum (the official client rejects values it does not know).

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde_json::Value;

const CONTRACT: &str = include_str!("../fixtures/wire-contract.json");

/// Every message, enum and service of the compiled files, by full name (`.aggregator.Task`).
struct Compiled {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
    services: BTreeMap<String, prost_types::ServiceDescriptorProto>,
}

fn compiled() -> Compiled {
    let set = FileDescriptorSet::decode(aggregator::pb::DESCRIPTORS).unwrap();
    let mut out = Compiled {
        messages: BTreeMap::new(),
        enums: BTreeMap::new(),
        services: BTreeMap::new(),
    };
    fn walk(prefix: &str, message: &DescriptorProto, out: &mut Compiled) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            walk(&name, nested, out);
        }
        for e in &message.enum_type {
            out.enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        out.messages.insert(name, message.clone());
    }
    for file in &set.file {
        let prefix = format!(".{}", file.package());
        for m in &file.message_type {
            walk(&prefix, m, &mut out);
        }
        for e in &file.enum_type {
            out.enums
                .insert(format!("{prefix}.{}", e.name()), e.clone());
        }
        for s in &file.service {
            out.services
                .insert(format!("{prefix}.{}", s.name()), s.clone());
        }
    }
    out
}

/// Resolves a protobufjs type name as protobuf scoping does: innermost scope first.
fn resolve(scope: &str, name: &str, compiled: &Compiled) -> Option<String> {
    let mut scope = scope.to_owned();
    loop {
        let candidate = format!("{scope}.{name}");
        if compiled.messages.contains_key(&candidate) || compiled.enums.contains_key(&candidate) {
            return Some(candidate);
        }
        scope = scope.rsplit_once('.')?.0.to_owned();
    }
}

fn scalar(name: &str) -> Option<Type> {
    Some(match name {
        "double" => Type::Double,
        "float" => Type::Float,
        "int64" => Type::Int64,
        "uint64" => Type::Uint64,
        "int32" => Type::Int32,
        "uint32" => Type::Uint32,
        "bool" => Type::Bool,
        "string" => Type::String,
        "bytes" => Type::Bytes,
        "sint32" => Type::Sint32,
        "sint64" => Type::Sint64,
        "fixed32" => Type::Fixed32,
        "fixed64" => Type::Fixed64,
        _ => return None,
    })
}

/// Checks one contract field against the compiled one; returns a difference, if any.
fn field_difference(
    scope: &str,
    name: &str,
    spec: &Value,
    message: &DescriptorProto,
    compiled: &Compiled,
) -> Option<String> {
    let at = format!("{scope}.{name}");
    // protobufjs names the well-known types' fields in camelCase (`nullValue`): match by JSON name.
    let Some(field) = message
        .field
        .iter()
        .find(|f| f.name() == name || f.json_name() == name)
    else {
        return Some(format!("{at}: missing"));
    };
    let id = spec["id"].as_i64().unwrap_or(-1);
    if i64::from(field.number()) != id {
        return Some(format!("{at}: number {} instead of {id}", field.number()));
    }
    let type_name = spec["type"].as_str().unwrap_or_default();
    if let Some(key_type) = spec["keyType"].as_str() {
        // A map: a repeated nested `*Entry` message with `key` and `value`.
        let entry = compiled.messages.get(field.type_name())?;
        let key = entry.field.iter().find(|f| f.name() == "key")?;
        let value = entry.field.iter().find(|f| f.name() == "value")?;
        if Some(key.r#type()) != scalar(key_type) {
            return Some(format!("{at}: map key is not {key_type}"));
        }
        let value_ok = match scalar(type_name) {
            Some(t) => value.r#type() == t,
            None => resolve(scope, type_name, compiled).as_deref() == Some(value.type_name()),
        };
        return (!value_ok).then(|| format!("{at}: map value is not {type_name}"));
    }
    let type_ok = match scalar(type_name) {
        Some(t) => field.r#type() == t,
        None => resolve(scope, type_name, compiled).as_deref() == Some(field.type_name()),
    };
    if !type_ok {
        return Some(format!(
            "{at}: type {:?} {} instead of {type_name}",
            field.r#type(),
            field.type_name()
        ));
    }
    let repeated = spec["rule"].as_str() == Some("repeated");
    if repeated != (field.label() == Label::Repeated) {
        return Some(format!("{at}: repeated should be {repeated}"));
    }
    let optional = spec["options"]["proto3_optional"]
        .as_bool()
        .unwrap_or(false);
    if optional != field.proto3_optional() {
        return Some(format!("{at}: proto3 optional should be {optional}"));
    }
    None
}

fn check_message(scope: &str, spec: &Value, compiled: &Compiled, differences: &mut Vec<String>) {
    let Some(message) = compiled.messages.get(scope) else {
        differences.push(format!("{scope}: message missing"));
        return;
    };
    let fields = spec["fields"].as_object().cloned().unwrap_or_default();
    let mut contract_numbers = BTreeSet::new();
    for (name, field) in &fields {
        contract_numbers.insert(field["id"].as_i64().unwrap_or(-1));
        if let Some(d) = field_difference(scope, name, field, message, compiled) {
            differences.push(d);
        }
    }
    // Oneofs: same members; nothing of ours inside them.
    for (oneof_name, oneof) in spec["oneofs"].as_object().cloned().unwrap_or_default() {
        let members: BTreeSet<String> = oneof["oneof"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let Some(index) = message
            .oneof_decl
            .iter()
            .position(|o| o.name() == oneof_name)
        else {
            differences.push(format!("{scope}: oneof {oneof_name} missing"));
            continue;
        };
        let compiled_members: BTreeSet<String> = message
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(i32::try_from(index).unwrap()))
            .map(|f| {
                if members.contains(f.name()) {
                    f.name().to_owned()
                } else {
                    f.json_name().to_owned()
                }
            })
            .collect();
        if compiled_members != members {
            differences.push(format!(
                "{scope}: oneof {oneof_name} has {compiled_members:?}, the contract {members:?}"
            ));
        }
    }
    // Our additions: new numbers only.
    for field in &message.field {
        let known = fields
            .keys()
            .any(|n| n == field.name() || n == field.json_name());
        if !known && contract_numbers.contains(&i64::from(field.number())) {
            differences.push(format!(
                "{scope}.{}: an addition reuses number {}",
                field.name(),
                field.number()
            ));
        }
    }
    walk(scope, spec, compiled, differences);
}

fn check_enum(scope: &str, spec: &Value, compiled: &Compiled, differences: &mut Vec<String>) {
    let Some(e) = compiled.enums.get(scope) else {
        differences.push(format!("{scope}: enum missing"));
        return;
    };
    let contract: BTreeMap<String, i64> = spec["values"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(-1)))
        .collect();
    let ours: BTreeMap<String, i64> = e
        .value
        .iter()
        .map(|v| (v.name().to_owned(), i64::from(v.number())))
        .collect();
    if contract != ours {
        differences.push(format!(
            "{scope}: values {ours:?}, the contract {contract:?}"
        ));
    }
}

fn check_service(scope: &str, spec: &Value, compiled: &Compiled, differences: &mut Vec<String>) {
    let Some(service) = compiled.services.get(scope) else {
        differences.push(format!("{scope}: service missing"));
        return;
    };
    for (name, method) in spec["methods"].as_object().cloned().unwrap_or_default() {
        let Some(m) = service.method.iter().find(|m| m.name() == name) else {
            differences.push(format!("{scope}.{name}: method missing"));
            continue;
        };
        let parent = scope.rsplit_once('.').map_or("", |(p, _)| p);
        let request = resolve(
            parent,
            method["requestType"].as_str().unwrap_or_default(),
            compiled,
        );
        let response = resolve(
            parent,
            method["responseType"].as_str().unwrap_or_default(),
            compiled,
        );
        if request.as_deref() != Some(m.input_type())
            || response.as_deref() != Some(m.output_type())
        {
            differences.push(format!(
                "{scope}.{name}: types {} -> {}",
                m.input_type(),
                m.output_type()
            ));
        }
        if m.client_streaming() || m.server_streaming() {
            differences.push(format!("{scope}.{name}: must be unary"));
        }
    }
}

fn walk(scope: &str, node: &Value, compiled: &Compiled, differences: &mut Vec<String>) {
    for (name, child) in node["nested"].as_object().cloned().unwrap_or_default() {
        let full = format!("{scope}.{name}");
        if child.get("fields").is_some() {
            check_message(&full, &child, compiled, differences);
        } else if child.get("values").is_some() {
            check_enum(&full, &child, compiled, differences);
        } else if child.get("methods").is_some() {
            check_service(&full, &child, compiled, differences);
        } else {
            walk(&full, &child, compiled, differences);
        }
    }
}

#[test]
fn every_element_of_the_official_contract_is_present_and_unchanged() {
    let contract: Value = serde_json::from_str(CONTRACT).unwrap();
    let compiled = compiled();
    let mut differences = Vec::new();
    walk("", &contract, &compiled, &mut differences);
    assert!(
        differences.is_empty(),
        "the proto drifted from the contract:\n{}",
        differences.join("\n")
    );
    // The contract's 28 methods, plus our additions under new names.
    let service = compiled.services.get(".aggregator.Aggregator").unwrap();
    let extra: BTreeSet<&str> = service
        .method
        .iter()
        .map(|m| m.name())
        .filter(|m| {
            contract["nested"]["aggregator"]["nested"]["Aggregator"]["methods"]
                .get(*m)
                .is_none()
        })
        .collect();
    assert_eq!(extra, BTreeSet::from(["CancelTask", "RevokeApiKey"]));
}

/// The check itself must catch a drift: change one number in a copy of the contract.
#[test]
fn the_check_catches_a_renumbered_field() {
    let mut contract: Value = serde_json::from_str(CONTRACT).unwrap();
    contract["nested"]["aggregator"]["nested"]["Task"]["fields"]["name"]["id"] = Value::from(99);
    let mut differences = Vec::new();
    walk("", &contract, &compiled(), &mut differences);
    assert!(
        differences
            .iter()
            .any(|d| d.contains(".aggregator.Task.name")),
        "{differences:?}"
    );
}
