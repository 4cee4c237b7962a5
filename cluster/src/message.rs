//! A stream message: whole commands' stored events (hash ‖ body), in log order.
//!
//! Layout: the version byte `1`, then per event a 4-byte big-endian length and the stored bytes.
//! A message with no event is the stream's genesis (see `stream`). A command is never split over
//! two messages (a reader applies a message whole); a group too large for one message is split
//! between commands.

use events::fjall::Slice;
use events::{Records, Ulid};

const VERSION: u8 = 1;
/// Room kept for the headers (subject, `Nats-Msg-Id`, `Nats-Expected-Last-Sequence`): they count
/// towards the server's `max_payload`.
pub const HEADER_ROOM: usize = 512;

/// A message of commands: its payload, the first event's ULID (its `Nats-Msg-Id`), and the end
/// of the commands it holds (the group's first `through` commands are in it or before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    pub first: Ulid,
    pub through: usize,
}

/// The bytes a command takes in a message.
fn command_size(command: &Records) -> usize {
    command.iter().map(|(_, stored)| 4 + stored.len()).sum()
}

/// Splits a group's commands (those with events) into messages of at most `max_payload` bytes,
/// headers included. `Err(i)`: command `i` alone is larger than that.
pub fn split(commands: &[Records], max_payload: usize) -> Result<Vec<Outgoing>, usize> {
    let room = max_payload.saturating_sub(HEADER_ROOM);
    let mut messages = Vec::new();
    let mut current: Option<Outgoing> = None;
    for (i, command) in commands.iter().enumerate() {
        let Some((first, _)) = command.first() else {
            continue;
        };
        let size = command_size(command);
        if 1 + size > room {
            return Err(i);
        }
        if let Some(open) = &current
            && open.payload.len() + size > room
        {
            messages.extend(current.take());
        }
        let message = current.get_or_insert_with(|| Outgoing {
            payload: vec![VERSION],
            first: *first,
            through: 0,
        });
        for (_, stored) in command {
            let len = u32::try_from(stored.len()).map_err(|_| i)?;
            message.payload.extend_from_slice(&len.to_be_bytes());
            message.payload.extend_from_slice(stored);
        }
        message.through = i + 1;
    }
    messages.extend(current);
    Ok(messages)
}

/// The genesis message's payload: no event.
pub fn genesis() -> Vec<u8> {
    vec![VERSION]
}

/// The stored events of a message.
pub fn decode(payload: &[u8]) -> Result<Vec<Slice>, String> {
    let Some((&version, mut rest)) = payload.split_first() else {
        return Err("an empty message".into());
    };
    if version != VERSION {
        return Err(format!(
            "message version {version}, this aggregator reads {VERSION}"
        ));
    }
    let mut events = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("a truncated event length")?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(format!(
                "an event of {len} bytes with {} left in the message",
                tail.len()
            ));
        }
        let (stored, tail) = tail.split_at(len);
        events.push(Slice::from(stored));
        rest = tail;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(sizes: &[usize], base: u128) -> Records {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (Ulid(base + i as u128), Slice::from(vec![i as u8; n])))
            .collect()
    }

    #[test]
    fn a_group_is_split_between_commands_under_max_payload() {
        // Given commands of 300, 50+50 and 400 bytes against 1 KiB messages (512 of headers)
        let commands = vec![
            command(&[300], 10),
            Vec::new(), // a deduplicated command: no events
            command(&[50, 50], 20),
            command(&[400], 30),
        ];
        // When split
        let messages = split(&commands, 1024).unwrap();
        // Then each message holds whole commands, in order, within the room
        assert_eq!(
            messages.iter().map(|m| m.through).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(messages[0].first, Ulid(10));
        assert_eq!(messages[1].first, Ulid(30));
        assert!(
            messages
                .iter()
                .all(|m| m.payload.len() + HEADER_ROOM <= 1024)
        );
        let decoded: Vec<Vec<u8>> = messages
            .iter()
            .flat_map(|m| decode(&m.payload).unwrap())
            .map(|s| s.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = commands.iter().flatten().map(|(_, s)| s.to_vec()).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_command_larger_than_a_message_is_named() {
        let commands = vec![command(&[10], 1), command(&[300, 300], 2)];
        assert_eq!(split(&commands, 1024), Err(1));
    }

    #[test]
    fn damaged_messages_are_errors() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[2]).is_err());
        assert!(decode(&[1, 0, 0, 0, 9, 1]).is_err());
        assert!(decode(&[1, 0, 0]).is_err());
        assert_eq!(decode(&genesis()).unwrap(), Vec::<Slice>::new());
    }
}
