//! `MethodCall`: the event trigger, the contract read and the contract write each have a prost
//! `MethodCall` of their own, with the same fields; one mapping serves the three, both ways.

use events::task::MethodCall;

use crate::pb;

/// A prost `MethodCall` (the three carry the same fields).
pub trait WireMethodCall {
    fn from_domain(call: &MethodCall) -> Self;
    fn to_domain(&self) -> MethodCall;
}

macro_rules! wire_method_call {
    ($($wire:ty),* $(,)?) => {$(
        impl WireMethodCall for $wire {
            fn from_domain(call: &MethodCall) -> Self {
                Self {
                    method_name: call.method_name.clone(),
                    call_data: call.call_data.clone(),
                    apply_to_fields: call.apply_to_fields.clone(),
                    method_params: call.method_params.clone(),
                }
            }

            fn to_domain(&self) -> MethodCall {
                MethodCall {
                    method_name: self.method_name.clone(),
                    call_data: self.call_data.clone(),
                    apply_to_fields: self.apply_to_fields.clone(),
                    method_params: self.method_params.clone(),
                }
            }
        }
    )*};
}

wire_method_call!(
    pb::event_trigger::MethodCall,
    pb::contract_read_node::MethodCall,
    pb::contract_write_node::MethodCall,
);

pub fn method_calls_from_pb<W: WireMethodCall>(calls: &[W]) -> Vec<MethodCall> {
    calls.iter().map(WireMethodCall::to_domain).collect()
}

pub fn method_calls_to_pb<W: WireMethodCall>(calls: &[MethodCall]) -> Vec<W> {
    calls.iter().map(W::from_domain).collect()
}
