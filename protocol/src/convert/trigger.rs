//! Triggers: `TaskTrigger` ⇄ `Trigger` (every trigger config), and the trigger outputs that
//! firings carry: an operator's report (`NotifyTriggersReq`) and a client's `TriggerTaskReq`.

use events::task::{
    BlockTriggerConfig, CronTriggerConfig, EventCondition, EventQuery, EventTriggerConfig,
    FixedTimeTriggerConfig, ManualTriggerConfig, Trigger, TriggerConfig, TriggerKind,
};
use serde_json::Value as Json;

use super::ConvertError;
use super::method_call::{method_calls_from_pb, method_calls_to_pb};
use super::value::{json_list, opt_json, sorted, unsorted, value_from_json};
use crate::pb;

pub fn trigger_from_pb(t: &pb::TaskTrigger) -> Result<Trigger, ConvertError> {
    use pb::task_trigger::TriggerType as T;
    let config = match &t.trigger_type {
        None => None,
        Some(T::Manual(m)) => {
            let c = m.config.clone().unwrap_or_default();
            Some(TriggerConfig::Manual(ManualTriggerConfig {
                data: opt_json(&c.data)?,
                headers: sorted(&c.headers),
                path_params: sorted(&c.path_params),
                lang: c.lang,
            }))
        }
        Some(T::FixedTime(f)) => Some(TriggerConfig::FixedTime(FixedTimeTriggerConfig {
            epochs: f.config.clone().unwrap_or_default().epochs,
        })),
        Some(T::Cron(c)) => Some(TriggerConfig::Cron(CronTriggerConfig {
            schedules: c.config.clone().unwrap_or_default().schedules,
        })),
        Some(T::Block(b)) => Some(TriggerConfig::Block(BlockTriggerConfig {
            interval: b.config.unwrap_or_default().interval,
        })),
        Some(T::Event(e)) => {
            let c = e.config.clone().unwrap_or_default();
            Some(TriggerConfig::Event(EventTriggerConfig {
                queries: c
                    .queries
                    .iter()
                    .map(|q| {
                        Ok(EventQuery {
                            addresses: q.addresses.clone(),
                            topics: q.topics.clone(),
                            max_events_per_block: q.max_events_per_block,
                            contract_abi: json_list(&q.contract_abi)?,
                            conditions: q
                                .conditions
                                .iter()
                                .map(|c| EventCondition {
                                    field_name: c.field_name.clone(),
                                    operator: c.operator.clone(),
                                    value: c.value.clone(),
                                    field_type: c.field_type.clone(),
                                })
                                .collect(),
                            method_calls: method_calls_from_pb(&q.method_calls),
                        })
                    })
                    .collect::<Result<_, ConvertError>>()?,
                cooldown_seconds: c.cooldown_seconds,
            }))
        }
    };
    Ok(Trigger {
        id: t.id.clone(),
        name: t.name.clone(),
        trigger_type: t.r#type,
        config,
    })
}

pub fn trigger_to_pb(t: &Trigger) -> pb::TaskTrigger {
    use pb::task_trigger::TriggerType as T;
    let trigger_type = t.config.as_ref().map(|config| match config {
        TriggerConfig::Manual(c) => T::Manual(pb::ManualTrigger {
            config: Some(pb::manual_trigger::Config {
                data: c.data.as_ref().map(value_from_json),
                headers: unsorted(&c.headers),
                path_params: unsorted(&c.path_params),
                lang: c.lang,
            }),
        }),
        TriggerConfig::FixedTime(c) => T::FixedTime(pb::FixedTimeTrigger {
            config: Some(pb::fixed_time_trigger::Config {
                epochs: c.epochs.clone(),
            }),
        }),
        TriggerConfig::Cron(c) => T::Cron(pb::CronTrigger {
            config: Some(pb::cron_trigger::Config {
                schedules: c.schedules.clone(),
            }),
        }),
        TriggerConfig::Block(c) => T::Block(pb::BlockTrigger {
            config: Some(pb::block_trigger::Config {
                interval: c.interval,
            }),
        }),
        TriggerConfig::Event(c) => T::Event(pb::EventTrigger {
            config: Some(pb::event_trigger::Config {
                queries: c
                    .queries
                    .iter()
                    .map(|q| pb::event_trigger::Query {
                        addresses: q.addresses.clone(),
                        topics: q.topics.clone(),
                        max_events_per_block: q.max_events_per_block,
                        contract_abi: q.contract_abi.iter().map(value_from_json).collect(),
                        conditions: q
                            .conditions
                            .iter()
                            .map(|c| pb::EventCondition {
                                field_name: c.field_name.clone(),
                                operator: c.operator.clone(),
                                value: c.value.clone(),
                                field_type: c.field_type.clone(),
                            })
                            .collect(),
                        method_calls: method_calls_to_pb(&q.method_calls),
                    })
                    .collect(),
                cooldown_seconds: c.cooldown_seconds,
            }),
        }),
    });
    pb::TaskTrigger {
        name: t.name.clone(),
        r#type: t.trigger_type,
        id: t.id.clone(),
        trigger_type,
    }
}

/// The trigger kind and output an operator's report carries.
pub fn reported_output(
    req: &pb::NotifyTriggersReq,
) -> Result<(TriggerKind, Option<Json>), ConvertError> {
    use pb::notify_triggers_req::TriggerOutput as O;
    Ok(match &req.trigger_output {
        Some(O::BlockTrigger(o)) => (TriggerKind::Block, opt_json(&o.data)?),
        Some(O::FixedTimeTrigger(o)) => (TriggerKind::FixedTime, opt_json(&o.data)?),
        Some(O::CronTrigger(o)) => (TriggerKind::Cron, opt_json(&o.data)?),
        Some(O::EventTrigger(o)) => (TriggerKind::Event, opt_json(&o.data)?),
        Some(O::ManualTrigger(o)) => (TriggerKind::Manual, opt_json(&o.data)?),
        None => return Err(ConvertError("the report has no trigger output".into())),
    })
}

/// The output member of a report of a `kind` firing with `output` (the operator's side of
/// `reported_output`).
pub fn report_output(kind: TriggerKind, output: &Json) -> pb::notify_triggers_req::TriggerOutput {
    use pb::notify_triggers_req::TriggerOutput as O;
    let data = Some(value_from_json(output));
    match kind {
        TriggerKind::Block => O::BlockTrigger(pb::block_trigger::Output { data }),
        TriggerKind::FixedTime => O::FixedTimeTrigger(pb::fixed_time_trigger::Output { data }),
        TriggerKind::Cron => O::CronTrigger(pb::cron_trigger::Output { data }),
        TriggerKind::Event => O::EventTrigger(pb::event_trigger::Output { data }),
        TriggerKind::Manual => O::ManualTrigger(pb::manual_trigger::Output { data }),
    }
}

/// The firing a `TriggerTask` describes: the member of its `trigger_output` oneof (or, when none
/// is set, `trigger_type`, or the task's own trigger type) and its data.
pub fn requested_firing(
    req: &pb::TriggerTaskReq,
    task_kind: Option<TriggerKind>,
) -> Result<(TriggerKind, Option<Json>), ConvertError> {
    use pb::trigger_task_req::TriggerOutput as O;
    Ok(match &req.trigger_output {
        Some(O::ManualTrigger(o)) => (TriggerKind::Manual, opt_json(&o.data)?),
        Some(O::FixedTimeTrigger(o)) => (TriggerKind::FixedTime, opt_json(&o.data)?),
        Some(O::CronTrigger(o)) => (TriggerKind::Cron, opt_json(&o.data)?),
        Some(O::BlockTrigger(o)) => (TriggerKind::Block, opt_json(&o.data)?),
        Some(O::EventTrigger(o)) => (TriggerKind::Event, opt_json(&o.data)?),
        None => {
            let kind = TriggerKind::from_wire_number(req.trigger_type)
                .or(task_kind)
                .ok_or_else(|| {
                    ConvertError("set trigger_type or one of the trigger outputs".into())
                })?;
            (kind, None)
        }
    })
}
