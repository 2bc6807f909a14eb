import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseJson, stringifyJson, isJsonObject, JsonSyntaxError, type JsonValue } from '../src/codec/json.js';

function syntaxError(e: unknown): boolean {
  assert.ok(e instanceof JsonSyntaxError, `expected a JsonSyntaxError, got ${String(e)}`);
  assert.ok(e instanceof SyntaxError);
  assert.equal(typeof e.position, 'number');
  assert.match(e.message, /at position \d+$/);
  return true;
}

describe('parseJson: values', () => {
  test('literals, strings, arrays and objects', () => {
    assert.equal(parseJson('null'), null);
    assert.equal(parseJson('true'), true);
    assert.equal(parseJson('false'), false);
    assert.equal(parseJson('"abc"'), 'abc');
    assert.deepEqual(parseJson('[]'), []);
    assert.deepEqual(parseJson('{}'), {});
    assert.deepEqual(parseJson(' \t\r\n{ "a" : [ 1 , true , null , "x" ] , "b" : { } } \n'), { a: [1, true, null, 'x'], b: {} });
  });

  test('safe integers are numbers, larger integers are exact bigints', () => {
    assert.equal(parseJson('0'), 0);
    assert.equal(parseJson('139880479506448'), 139880479506448);
    assert.equal(parseJson('9007199254740991'), Number.MAX_SAFE_INTEGER);
    assert.equal(parseJson('-9007199254740991'), -Number.MAX_SAFE_INTEGER);
    assert.equal(parseJson('9007199254740992'), 9007199254740992n);
    assert.equal(parseJson('9007199254740993'), 9007199254740993n);
    assert.equal(parseJson('18446744073709551615'), 18446744073709551615n);
    assert.equal(parseJson('-18446744073709551617'), -18446744073709551617n);
    assert.deepEqual(parseJson('{"addr":18446744073709547520}'), { addr: 0xffff_ffff_ffff_f000n });
  });

  test('bigintIntegers returns every integer literal as bigint and nothing else', () => {
    assert.deepEqual(parseJson('[0,-0,42,9007199254740993,1.5,1e3,1000.0,"7"]', { bigintIntegers: true }), [
      0n,
      0n,
      42n,
      9007199254740993n,
      1.5,
      1000,
      1000,
      '7',
    ]);
  });

  test('fractions and exponents stay numbers', () => {
    assert.equal(parseJson('1.5'), 1.5);
    assert.equal(parseJson('-0.25'), -0.25);
    assert.equal(parseJson('1e3'), 1000);
    assert.equal(parseJson('1E-2'), 0.01);
    assert.equal(parseJson('2.5e+1'), 25);
    assert.equal(parseJson('12345678901234567890.0'), 12345678901234567890);
    assert.ok(Object.is(parseJson('-0'), -0));
  });

  test('string escapes and non-ASCII text', () => {
    assert.equal(parseJson('"a\\nb\\t\\u00e9\\"\\\\\\/"'), 'a\nb\té"\\/');
    assert.equal(parseJson('"\\ud83d\\ude80"'), '🚀');
    assert.equal(parseJson('"héllo ✓ 🚀"'), 'héllo ✓ 🚀');
    assert.equal(parseJson('""'), '');
  });

  test('agrees with JSON.parse on ordinary documents', () => {
    const docs = [
      '{"buffers":[{"addr":139880479506448,"length":1048576,"name":"10.0.0.7:15342"}],"name":"10.0.0.7:15342","protocol":"tcp","tcp_data_port":16021,"tcp_proto_version":2,"timestamp":"2026-08-22 13:12:18.123456"}\n',
      '[1,-2,3.25,-4e-5,"\\u0000",[[[]]],{"":""}]',
      '{"a":{"b":{"c":[null,false,true]}}}',
    ];
    for (const d of docs) assert.deepEqual(parseJson(d), JSON.parse(d));
  });

  test('a duplicate key keeps the last value, like JSON.parse', () => {
    assert.deepEqual(parseJson('{"a":1,"a":2}'), { a: 2 });
  });
});

describe('parseJson: rejects', () => {
  const bad = [
    '',
    ' ',
    '{',
    '}',
    '[',
    '[1,]',
    '[,1]',
    '[1 2]',
    '{"a":1,}',
    '{"a" 1}',
    '{"a":}',
    '{a:1}',
    "{'a':1}",
    '{"a":1}}',
    '01',
    '-01',
    '1.',
    '.5',
    '1e',
    '1e+',
    '-',
    '+1',
    '0x10',
    'NaN',
    'Infinity',
    '-Infinity',
    'tru',
    'nul',
    'True',
    '"abc',
    '"abc\\"',
    '"\\x41"',
    '"\\u12"',
    '"a\u0001b"',
    '"a\nb"',
    '"\\n\u0001"',
    '1 2',
    'null null',
    '// c\n1',
    '\uFEFF{}',
  ];
  for (const text of bad) {
    test(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseJson(text), syntaxError);
      assert.throws(() => JSON.parse(text), SyntaxError, 'control: JSON.parse rejects it too');
    });
  }

  test('reports the position of the error', () => {
    assert.throws(() => parseJson('[1,]'), (e: unknown) => e instanceof JsonSyntaxError && e.position === 3);
    assert.throws(() => parseJson('{"a":1} x'), (e: unknown) => e instanceof JsonSyntaxError && e.position === 8);
  });

  test('deep nesting is a JsonSyntaxError, not a stack overflow', () => {
    for (const text of ['['.repeat(10000), '['.repeat(10000) + ']'.repeat(10000), '{"a":'.repeat(10000) + '1' + '}'.repeat(10000)]) {
      assert.throws(() => parseJson(text), (e: unknown) => syntaxError(e) && /too deep/.test((e as Error).message));
    }
  });

  test('moderate nesting is accepted', () => {
    const text = '['.repeat(50) + '1' + ']'.repeat(50);
    let v = parseJson(text);
    for (let i = 0; i < 50; i++) {
      assert.ok(Array.isArray(v));
      v = v[0] as JsonValue;
    }
    assert.equal(v, 1);
  });
});

describe('parseJson: prototype safety', () => {
  test('"__proto__" becomes an own property and pollutes nothing', () => {
    const v = parseJson('{"__proto__":{"polluted":true},"a":1}');
    assert.ok(isJsonObject(v));
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Object.prototype.hasOwnProperty.call(v, '__proto__'));
    assert.deepEqual(Object.keys(v), ['__proto__', 'a']);
    assert.deepEqual(Object.getOwnPropertyDescriptor(v, '__proto__')?.value, { polluted: true });
    assert.equal((v as Record<string, unknown>)['polluted'], undefined);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  test('"constructor" and "prototype" keys are plain data', () => {
    const v = parseJson('{"constructor":{"prototype":{"polluted":1}}}');
    assert.ok(isJsonObject(v));
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
  });

  test('nested "__proto__" keys are own properties too', () => {
    const v = parseJson('[{"__proto__":[1]}]');
    assert.ok(Array.isArray(v));
    const inner = v[0];
    assert.ok(isJsonObject(inner));
    assert.ok(Object.prototype.hasOwnProperty.call(inner, '__proto__'));
    assert.equal(Object.getPrototypeOf(inner), Object.prototype);
  });
});

describe('stringifyJson', () => {
  test('bigints are written as exact digits', () => {
    assert.equal(stringifyJson(18446744073709551615n), '18446744073709551615');
    assert.equal(stringifyJson(-9007199254740993n), '-9007199254740993');
    assert.equal(stringifyJson({ addr: 0x7f3a2c000000n }), '{"addr":139887823028224}');
  });

  test('large integral numbers never use exponent form', () => {
    for (const v of [1e21, 2 ** 64, 2 ** 70, 1.7976931348623157e308, -1e25]) {
      const s = stringifyJson(v);
      assert.match(s, /^-?\d+$/, `${v} -> ${s}`);
      assert.equal(Number(s), v);
    }
  });

  test('other numbers, literals and strings', () => {
    assert.equal(stringifyJson(0), '0');
    assert.equal(stringifyJson(-0), '0');
    assert.equal(stringifyJson(16021), '16021');
    assert.equal(stringifyJson(1.5), '1.5');
    assert.equal(stringifyJson(null), 'null');
    assert.equal(stringifyJson(true), 'true');
    assert.equal(stringifyJson(false), 'false');
    assert.equal(stringifyJson('a"b\\\n\u0001é'), JSON.stringify('a"b\\\n\u0001é'));
    assert.equal(stringifyJson([1, [2, {}], { x: 'y' }]), '[1,[2,{}],{"x":"y"}]');
  });

  test('non-finite numbers are refused', () => {
    for (const v of [NaN, Infinity, -Infinity]) assert.throws(() => stringifyJson(v), TypeError);
    assert.throws(() => stringifyJson([1, { a: NaN }]), TypeError);
  });

  test('round-trips parseJson output losslessly', () => {
    const text = '{"__proto__":{"x":1},"a":[18446744073709551615,-1,0.5,"\\u0000\\"",null,true],"b":{}}';
    const v = parseJson(text);
    assert.equal(stringifyJson(v), text);
    assert.deepEqual(parseJson(stringifyJson(v)), v);
  });
});

describe('isJsonObject', () => {
  test('only plain objects qualify', () => {
    assert.equal(isJsonObject({}), true);
    assert.equal(isJsonObject({ a: 1 }), true);
    assert.equal(isJsonObject([]), false);
    assert.equal(isJsonObject(null), false);
    assert.equal(isJsonObject(undefined), false);
    assert.equal(isJsonObject('x'), false);
    assert.equal(isJsonObject(1n), false);
  });
});
