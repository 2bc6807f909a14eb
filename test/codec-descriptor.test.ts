import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  KNOWN_PROTOCOLS,
  encodeSegmentDesc,
  decodeSegmentDesc,
  mooncakeTimestamp,
  type SegmentDesc,
} from '../src/codec/descriptor.js';
import { JsonSyntaxError } from '../src/codec/json.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

function malformed(re?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.MALFORMED);
    if (re) assert.match(e.message, re);
    return true;
  };
}

/** §2.2: what a Python peer in P2P/TCP mode publishes (FastWriter: sorted keys, trailing "\n"). */
const PYTHON_DESC =
  '{"buffers":[{"addr":139880479506448,"length":1048576,"name":"10.0.0.7:15342"}],"name":"10.0.0.7:15342","protocol":"tcp","tcp_data_port":16021,"tcp_proto_version":2,"timestamp":"2026-08-22 13:12:18.123456"}\n';

const U64_MAX = (1n << 64n) - 1n;

/** A tcp descriptor whose single buffer has the given raw JSON addr/length/name tokens. */
function withBuffer(addr: string, length = '4096', name = '"b"'): string {
  return `{"name":"h:1","protocol":"tcp","tcp_data_port":1,"buffers":[{"name":${name},"addr":${addr},"length":${length}}]}`;
}

function desc(over: Partial<SegmentDesc> = {}): SegmentDesc {
  return {
    name: '127.0.0.1:15001',
    protocol: 'tcp',
    tcpDataPort: 16001,
    tcpProtoVersion: 2,
    timestamp: '2026-08-22 13:12:18.123456',
    buffers: [{ name: '127.0.0.1:15001', addr: 0x1000_0000_0000n, length: 1048576n }],
    ...over,
  };
}

describe('decodeSegmentDesc: reference example', () => {
  test('decodes the §2.2 Python descriptor with exact u64 values', () => {
    assert.deepEqual(decodeSegmentDesc(PYTHON_DESC), {
      name: '10.0.0.7:15342',
      protocol: 'tcp',
      tcpDataPort: 16021,
      tcpProtoVersion: 2,
      timestamp: '2026-08-22 13:12:18.123456',
      buffers: [{ name: '10.0.0.7:15342', addr: 139880479506448n, length: 1048576n }],
    });
  });

  test('does not depend on key order or whitespace (HTTP writer: no newline)', () => {
    const reordered =
      '{ "timestamp":"2026-08-22 13:12:18.123456", "tcp_proto_version":2, "tcp_data_port":16021, "protocol":"tcp",\n' +
      '  "name":"10.0.0.7:15342", "buffers":[ {"name":"10.0.0.7:15342","length":1048576,"addr":139880479506448} ] }';
    assert.deepEqual(decodeSegmentDesc(reordered), decodeSegmentDesc(PYTHON_DESC));
    assert.deepEqual(decodeSegmentDesc(PYTHON_DESC.trimEnd()), decodeSegmentDesc(PYTHON_DESC));
  });

  test('unknown top-level and buffer fields are ignored', () => {
    const text = PYTHON_DESC.replace('"name":"10.0.0.7:15342","protocol"', '"name":"10.0.0.7:15342","rdma_server_name":"x","extra":[1.5,{}],"protocol"').replace(
      '"length":1048576,',
      '"length":1048576,"rkey":[1,2],',
    );
    assert.notEqual(text, PYTHON_DESC);
    assert.deepEqual(decodeSegmentDesc(text), decodeSegmentDesc(PYTHON_DESC));
  });
});

describe('decodeSegmentDesc: u64 fields', () => {
  test('addresses and lengths up to 2^64-1 decode exactly', () => {
    const cases: [bigint, bigint][] = [
      [(1n << 53n) + 1n, 4096n],
      [U64_MAX - 4095n, 4096n],
      [U64_MAX, 1n],
      [1n, U64_MAX],
      [0x7f3a2c000000n, (1n << 40n) + 3n],
    ];
    for (const [addr, length] of cases) {
      const d = decodeSegmentDesc(withBuffer(addr.toString(), length.toString()));
      assert.equal(d.buffers[0]!.addr, addr);
      assert.equal(d.buffers[0]!.length, length);
    }
  });

  test('a range past 2^64 is rejected', () => {
    assert.throws(() => decodeSegmentDesc(withBuffer(U64_MAX.toString(), '2')), malformed(/overflows/));
    assert.throws(() => decodeSegmentDesc(withBuffer((U64_MAX - 4095n).toString(), '4097')), malformed());
  });

  test('values outside the u64 range are rejected', () => {
    assert.throws(() => decodeSegmentDesc(withBuffer((1n << 64n).toString())), malformed(/u64/));
    assert.throws(() => decodeSegmentDesc(withBuffer('4096', (1n << 64n).toString())), malformed(/u64/));
    assert.throws(() => decodeSegmentDesc(withBuffer('-1')), malformed());
    assert.throws(() => decodeSegmentDesc(withBuffer('-18446744073709551615')), malformed());
  });

  test('non-integral or non-numeric addr/length are rejected', () => {
    const bad = ['1.5', '1e3', '1E3', '4096.0', '4.096e3', '1e30', '"4096"', 'true', 'null', '[4096]', '{}'];
    for (const tok of bad) {
      assert.throws(() => decodeSegmentDesc(withBuffer(tok)), malformed(/addr/), `addr ${tok}`);
      assert.throws(() => decodeSegmentDesc(withBuffer('4096', tok)), malformed(/length/), `length ${tok}`);
    }
    // Control: the integer spelling of the same value is fine.
    assert.equal(decodeSegmentDesc(withBuffer('1000')).buffers[0]!.addr, 1000n);
  });

  test('a missing addr or length is rejected', () => {
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[{"name":"b","length":1}]}'), malformed(/addr/));
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[{"name":"b","addr":1}]}'), malformed(/length/));
  });
});

describe('decodeSegmentDesc: Mooncake validation rules', () => {
  test('empty buffer name, addr 0 or length 0 rejects the segment', () => {
    assert.throws(() => decodeSegmentDesc(withBuffer('4096', '4096', '""')), malformed(/name/));
    assert.throws(() => decodeSegmentDesc(withBuffer('0')), malformed(/addr is 0/));
    assert.throws(() => decodeSegmentDesc(withBuffer('4096', '0')), malformed(/length is 0/));
    assert.throws(() => decodeSegmentDesc(withBuffer('4096', '4096', '7')), malformed(/name/));
  });

  test('one bad buffer among good ones rejects the whole segment', () => {
    const text =
      '{"name":"n","protocol":"tcp","buffers":[{"name":"a","addr":4096,"length":1},{"name":"b","addr":0,"length":1},{"name":"c","addr":8192,"length":1}]}';
    assert.throws(() => decodeSegmentDesc(text), malformed(/buffers\[1\]/));
  });

  test('unknown protocols are rejected, every known one accepted', () => {
    for (const p of ['udp', 'TCP', '', 'tcp ', '__proto__', 'toString']) {
      assert.throws(() => decodeSegmentDesc(`{"name":"n","protocol":${JSON.stringify(p)}}`), malformed(/protocol/), p);
    }
    assert.equal(KNOWN_PROTOCOLS.size, 17);
    for (const p of KNOWN_PROTOCOLS) assert.equal(decodeSegmentDesc(`{"name":"n","protocol":"${p}"}`).protocol, p);
  });

  test('a multi-protocol array or a missing protocol is rejected', () => {
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":["tcp","rdma"]}'), malformed(/protocol/));
    assert.throws(() => decodeSegmentDesc('{"name":"n"}'), malformed(/protocol/));
  });

  test('a missing or non-string name is rejected', () => {
    assert.throws(() => decodeSegmentDesc('{"protocol":"tcp"}'), malformed(/name/));
    assert.throws(() => decodeSegmentDesc('{"name":1,"protocol":"tcp"}'), malformed(/name/));
  });

  test('buffers of other protocols are not interpreted', () => {
    const rdma = '{"name":"n","protocol":"rdma","devices":[{"name":"mlx5_0","lid":1,"gid":"00"}],"buffers":[{"name":"b","addr":0,"length":0,"rkey":[1],"lkey":[2]}]}';
    assert.deepEqual(decodeSegmentDesc(rdma).buffers, []);
  });

  test('missing tcp_proto_version decodes as 1, missing tcp_data_port as 0', () => {
    const d = decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[{"name":"b","addr":4096,"length":1}]}');
    assert.equal(d.tcpProtoVersion, 1);
    assert.equal(d.tcpDataPort, 0);
    assert.equal(d.timestamp, undefined);
    assert.ok(!('timestamp' in d));
    const n = decodeSegmentDesc('{"name":"n","protocol":"tcp","tcp_data_port":null,"tcp_proto_version":null}');
    assert.equal(n.tcpProtoVersion, 1);
    assert.equal(n.tcpDataPort, 0);
  });

  test('tcp_data_port and tcp_proto_version must be integers in range', () => {
    const doc = (port: string, ver = '2'): string => `{"name":"n","protocol":"tcp","tcp_data_port":${port},"tcp_proto_version":${ver}}`;
    assert.equal(decodeSegmentDesc(doc('65535')).tcpDataPort, 65535);
    assert.equal(decodeSegmentDesc(doc('0')).tcpDataPort, 0);
    for (const p of ['65536', '-1', '"16021"', '16021.5', 'true', '99999999999999999999']) {
      assert.throws(() => decodeSegmentDesc(doc(p)), malformed(/tcp_data_port/), p);
    }
    for (const v of ['"2"', '2.5', '[2]', '99999999999999999999']) {
      assert.throws(() => decodeSegmentDesc(doc('1', v)), malformed(/tcp_proto_version/), v);
    }
  });

  test('missing or null buffers is an empty list; other shapes are rejected', () => {
    assert.deepEqual(decodeSegmentDesc('{"name":"n","protocol":"tcp"}').buffers, []);
    assert.deepEqual(decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":null}').buffers, []);
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":{}}'), malformed(/buffers/));
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[1]}'), malformed(/buffers\[0\]/));
    assert.throws(() => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[null]}'), malformed(/buffers\[0\]/));
  });

  test('a non-string timestamp is ignored', () => {
    assert.equal(decodeSegmentDesc('{"name":"n","protocol":"tcp","timestamp":12}').timestamp, undefined);
  });
});

describe('decodeSegmentDesc: hostile input', () => {
  test('garbage is MALFORMED with the JSON error as cause', () => {
    for (const text of ['', 'not json', '{', '{"name":"n",', '{"name":"n"}}', "{'name':'n'}", '\u0000']) {
      assert.throws(
        () => decodeSegmentDesc(text),
        (e: unknown) => malformed(/not valid JSON/)(e) && (e as Error).cause instanceof JsonSyntaxError,
        JSON.stringify(text),
      );
    }
  });

  test('valid JSON that is not an object is MALFORMED', () => {
    for (const text of ['null', '[]', '[{}]', '"tcp"', '1', 'true']) {
      assert.throws(() => decodeSegmentDesc(text), malformed(/object/), text);
    }
  });

  test('10000 nested brackets give a typed error, not a stack overflow', () => {
    for (const text of ['['.repeat(10000), `{"name":"n","protocol":"tcp","buffers":${'['.repeat(10000)}`, '{"a":'.repeat(10000)]) {
      assert.throws(() => decodeSegmentDesc(text), malformed(/too deep/));
    }
  });

  test('"__proto__" keys do not pollute prototypes or supply fields', () => {
    const text =
      '{"__proto__":{"polluted":1,"protocol":"tcp"},"name":"n","protocol":"tcp","buffers":[{"__proto__":{"name":"x"},"name":"b","addr":4096,"length":1}]}';
    const d = decodeSegmentDesc(text);
    assert.deepEqual(d.buffers, [{ name: 'b', addr: 4096n, length: 1n }]);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.equal(Object.getPrototypeOf(d), Object.prototype);

    // Fields hidden under "__proto__" are not inherited.
    assert.throws(() => decodeSegmentDesc('{"__proto__":{"protocol":"tcp"},"name":"n"}'), malformed(/protocol/));
    assert.throws(
      () => decodeSegmentDesc('{"name":"n","protocol":"tcp","buffers":[{"__proto__":{"name":"x","addr":1,"length":1}}]}'),
      malformed(/name/),
    );
  });
});

describe('encodeSegmentDesc', () => {
  test('round-trips through decodeSegmentDesc', () => {
    const d = desc({
      buffers: [
        { name: 'a', addr: 0x1000_0000_0000n, length: 1048576n },
        { name: 'b', addr: 1n << 63n, length: 1n << 62n },
        { name: 'c', addr: U64_MAX, length: 1n },
      ],
    });
    assert.deepEqual(decodeSegmentDesc(encodeSegmentDesc(d)), d);
  });

  test('writes exact u64 digits, never exponents or fractions', () => {
    const d = desc({ buffers: [{ name: 'x', addr: U64_MAX - 4095n, length: 10n ** 19n }] });
    const text = encodeSegmentDesc(d);
    assert.ok(text.includes('"addr":18446744073709547520'), text);
    assert.ok(text.includes('"length":10000000000000000000'), text);
    const numbers = text.replace(/"(?:[^"\\]|\\.)*"/g, '""'); // drop strings, keep the number tokens
    assert.doesNotMatch(numbers, /[eE.]/);
  });

  test('produces the fields Mooncake reads, as valid JSON', () => {
    const text = encodeSegmentDesc(desc());
    const plain = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(plain).sort(), ['buffers', 'name', 'protocol', 'tcp_data_port', 'tcp_proto_version', 'timestamp']);
    assert.equal(plain['tcp_proto_version'], 2);
    assert.equal(plain['tcp_data_port'], 16001);
    assert.deepEqual(plain['buffers'], [{ name: '127.0.0.1:15001', addr: 0x1000_0000_0000, length: 1048576 }]);
    assert.equal(plain['timestamp'], '2026-08-22 13:12:18.123456');
  });

  test('fills in a Mooncake-format timestamp when none is given', () => {
    const d = desc();
    delete d.timestamp;
    const plain = JSON.parse(encodeSegmentDesc(d)) as Record<string, unknown>;
    assert.match(String(plain['timestamp']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  });

  test('escapes names so they survive the round trip', () => {
    const d = desc({ name: '[::1]:15001', buffers: [{ name: 'q"\\\n✓', addr: 4096n, length: 1n }] });
    assert.deepEqual(decodeSegmentDesc(encodeSegmentDesc(d)), d);
  });
});

describe('mooncakeTimestamp', () => {
  test('formats local time with microseconds', () => {
    assert.equal(mooncakeTimestamp(new Date(2026, 7, 22, 13, 12, 18, 123)), '2026-08-22 13:12:18.123000');
    assert.equal(mooncakeTimestamp(new Date(2001, 0, 2, 3, 4, 5, 6)), '2001-01-02 03:04:05.006000');
  });
});

describe('our optional fields (machine_id, shm_name)', () => {
  test('round-trip, and are left out when absent', () => {
    const desc = {
      name: 'h:1',
      protocol: 'tcp',
      tcpDataPort: 2,
      tcpProtoVersion: 2,
      machineId: 'boot:machine',
      buffers: [
        { name: 'h:1', addr: 4096n, length: 10n, shmName: 'transfer-engine-1-00112233aabbccdd' },
        { name: 'h:1', addr: 8192n, length: 10n },
      ],
    };
    const back = decodeSegmentDesc(encodeSegmentDesc(desc));
    assert.equal(back.machineId, 'boot:machine');
    assert.equal(back.buffers[0]!.shmName, 'transfer-engine-1-00112233aabbccdd');
    assert.equal('shmName' in back.buffers[1]!, false);
    const plain = encodeSegmentDesc({ ...desc, machineId: undefined, buffers: [desc.buffers[1]!] } as never);
    assert.ok(!plain.includes('machine_id') && !plain.includes('shm_name'));
  });

  test('a wrong type in them is ignored, never a reason to reject the segment', () => {
    const d = decodeSegmentDesc(
      '{"name":"h:1","protocol":"tcp","tcp_data_port":2,"machine_id":7,"buffers":[{"name":"h:1","addr":4096,"length":10,"shm_name":{}}]}',
    );
    assert.equal(d.machineId, undefined);
    assert.equal(d.buffers[0]!.shmName, undefined);
  });
});

describe('engine_id (ours: engine identity)', () => {
  const base = { name: 'h:1', protocol: 'tcp', tcpDataPort: 2, tcpProtoVersion: 2, buffers: [{ name: 'h:1', addr: 4096n, length: 10n }] };

  test('written as a JSON integer after the Mooncake fields, read back exactly up to 2^53 - 1', () => {
    for (const id of [1, 4242, Number.MAX_SAFE_INTEGER]) {
      const text = encodeSegmentDesc({ ...base, engineId: id, timestamp: 't' });
      assert.equal(text, `{"name":"h:1","protocol":"tcp","tcp_data_port":2,"tcp_proto_version":2,"timestamp":"t","buffers":[{"name":"h:1","addr":4096,"length":10}],"engine_id":${id}}`);
      assert.equal(decodeSegmentDesc(text).engineId, id);
    }
    assert.ok(!encodeSegmentDesc(base).includes('engine_id'), 'absent when not given (Mooncake peers have none)');
  });

  test('anything but an integer in [1, 2^53) is ignored, never a reason to reject the segment', () => {
    for (const raw of ['0', '-3', '9007199254740992', '1.5', '"12"', 'null', '{}']) {
      const d = decodeSegmentDesc(`{"name":"h:1","protocol":"tcp","tcp_data_port":2,"engine_id":${raw},"buffers":[]}`);
      assert.equal(d.engineId, undefined, raw);
    }
  });
});

describe('metrics_port (ours: where the status page reads an engine)', () => {
  const base = { name: 'h:1', protocol: 'tcp', tcpDataPort: 2, tcpProtoVersion: 2, buffers: [{ name: 'h:1', addr: 4096n, length: 10n }] };

  test('written as a JSON integer when the engine serves metrics, read back; absent otherwise', () => {
    const text = encodeSegmentDesc({ ...base, metricsPort: 9464, timestamp: 't' });
    assert.equal(text, '{"name":"h:1","protocol":"tcp","tcp_data_port":2,"tcp_proto_version":2,"timestamp":"t","buffers":[{"name":"h:1","addr":4096,"length":10}],"metrics_port":9464}');
    assert.equal(decodeSegmentDesc(text).metricsPort, 9464);
    assert.ok(!encodeSegmentDesc(base).includes('metrics_port'));
  });

  test('anything but a port in [1, 65535] is ignored, never a reason to reject the segment', () => {
    for (const raw of ['0', '-1', '65536', '1.5', '"80"', 'null', '[]']) {
      const d = decodeSegmentDesc(`{"name":"h:1","protocol":"tcp","tcp_data_port":2,"metrics_port":${raw},"buffers":[]}`);
      assert.equal(d.metricsPort, undefined, raw);
    }
  });
});

describe('tls (ours: both ports take only mutual TLS)', () => {
  const base = { name: 'h:1', protocol: 'tcp', tcpDataPort: 2, tcpProtoVersion: 2, buffers: [{ name: 'h:1', addr: 4096n, length: 10n }] };

  test('written as a string when the engine has TLS, read back; absent otherwise', () => {
    const text = encodeSegmentDesc({ ...base, tls: 'mtls-1.3', timestamp: 't' });
    assert.equal(text, '{"name":"h:1","protocol":"tcp","tcp_data_port":2,"tcp_proto_version":2,"timestamp":"t","buffers":[{"name":"h:1","addr":4096,"length":10}],"tls":"mtls-1.3"}');
    assert.equal(decodeSegmentDesc(text).tls, 'mtls-1.3');
    assert.ok(!encodeSegmentDesc(base).includes('tls'));
  });

  test('anything but a non-empty string is absent (the segment is then clear text), never a reason to reject it', () => {
    for (const raw of ['""', 'true', '1', 'null', '[]', '{}']) {
      const d = decodeSegmentDesc(`{"name":"h:1","protocol":"tcp","tcp_data_port":2,"tls":${raw},"buffers":[]}`);
      assert.equal(d.tls, undefined, raw);
    }
  });
});
