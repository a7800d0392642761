// src/config.ts: parsing of overlay-style -o option strings.
import test from 'ava';
import { ConfigError, parseOptions, splitLowerdir, splitOptions } from '../../src/config.js';

function fails(t: import('ava').ExecutionContext, opts: string[], message: string): void {
  const e = t.throws(() => parseOptions(opts), { instanceOf: ConfigError }, opts.join(' '));
  t.is(e?.message, message);
  t.is(e?.name, 'ConfigError');
  t.true(e instanceof Error);
}

test('lowerdir lists the branches top-most first', (t) => {
  const o = parseOptions(['lowerdir=/top:/mid:/base']);
  t.deepEqual(o.lowers, ['/top', '/mid', '/base']);
  t.is(o.upper, undefined);
  t.is(o.work, undefined);
  t.false(o.readOnly);
  t.is(o.allowOther, undefined, 'not given: the default decides (D69)');
  t.deepEqual(o.fuseOptions, []);
  t.deepEqual(parseOptions(['lowerdir=/only']).lowers, ['/only']);
});

test('escapes: \\: is a colon and \\, a comma inside a path, \\\\ a backslash', (t) => {
  t.deepEqual(parseOptions(['lowerdir=/a\\:b:/c']).lowers, ['/a:b', '/c']);
  t.deepEqual(parseOptions(['lowerdir=/a\\,b:/c,ro']).lowers, ['/a,b', '/c']);
  t.true(parseOptions(['lowerdir=/a\\,b:/c,ro']).readOnly);
  // "\\" then ":" is a backslash at the end of the first path, then a separator.
  t.deepEqual(parseOptions(['lowerdir=/a\\\\:/b']).lowers, ['/a\\', '/b']);
  // "\\" then "," is a backslash, then the end of the option.
  const o = parseOptions(['lowerdir=/x\\\\,allow_other']);
  t.deepEqual(o.lowers, ['/x\\']);
  t.true(o.allowOther);
  t.deepEqual(parseOptions(['lowerdir=/p\\\\\\:q']).lowers, ['/p\\:q']);
  const w = parseOptions(['lowerdir=/l,upperdir=/u\\,1\\:2\\\\,workdir=/w\\,x']);
  t.is(w.upper, '/u,1:2\\');
  t.is(w.work, '/w,x');
});

test('splitOptions keeps escapes for the value parsers; splitLowerdir removes them', (t) => {
  t.deepEqual(splitOptions('a,b\\,c,,d'), ['a', 'b\\,c', 'd']);
  t.deepEqual(splitOptions(''), []);
  t.deepEqual(splitOptions('x\\\\,y'), ['x\\\\', 'y']);
  t.deepEqual(splitLowerdir('a\\:b:c\\\\:d'), ['a:b', 'c\\', 'd']);
  t.deepEqual(splitLowerdir('a::b'), ['a', '', 'b']);
});

test('several -o strings combine; a later value of an option wins', (t) => {
  const o = parseOptions(['lowerdir=/a', 'ro,allow_other', 'lowerdir=/b:/c']);
  t.deepEqual(o.lowers, ['/b', '/c']);
  t.true(o.readOnly);
  t.true(o.allowOther);
  t.false(parseOptions(['lowerdir=/a,ro', 'rw']).readOnly);
});

test('allow_other: on without a value or with on, off with off; anything else is an error', (t) => {
  t.true(parseOptions(['lowerdir=/l,allow_other']).allowOther);
  t.true(parseOptions(['lowerdir=/l,allow_other=on']).allowOther);
  t.false(parseOptions(['lowerdir=/l,allow_other=off']).allowOther);
  t.false(parseOptions(['lowerdir=/l,allow_other', 'allow_other=off']).allowOther, 'the later one wins');
  fails(t, ['lowerdir=/l,allow_other=yes'], 'allow_other takes no value, or on or off, not yes');
});

test('noacl turns ACL enforcement off, acl back on; neither takes a value', (t) => {
  t.is(parseOptions(['lowerdir=/l']).acl, undefined);
  t.false(parseOptions(['lowerdir=/l,noacl']).acl);
  t.true(parseOptions(['lowerdir=/l,noacl,acl']).acl);
  fails(t, ['lowerdir=/l,noacl=1'], 'option noacl takes no value (noacl=1)');
});

test('upperdir and workdir come as a pair', (t) => {
  const o = parseOptions(['lowerdir=/l,upperdir=/u,workdir=/w']);
  t.is(o.upper, '/u');
  t.is(o.work, '/w');
  fails(t, ['lowerdir=/l,upperdir=/u'], 'upperdir= needs workdir= too');
  fails(t, ['lowerdir=/l,workdir=/w'], 'workdir= needs upperdir= too');
});

test('missing values are errors naming the option', (t) => {
  fails(t, ['lowerdir'], 'option lowerdir needs a value (lowerdir=...)');
  fails(t, ['lowerdir='], 'option lowerdir needs a value (lowerdir=...)');
  fails(t, ['lowerdir=/l,upperdir=,workdir=/w'], 'option upperdir needs a value (upperdir=...)');
  fails(t, ['lowerdir=/l,upperdir=/u,workdir'], 'option workdir needs a value (workdir=...)');
});

test('an empty directory in lowerdir is an error', (t) => {
  fails(t, ['lowerdir=/a::/b'], 'empty directory in lowerdir=/a::/b');
  fails(t, ['lowerdir=/a:'], 'empty directory in lowerdir=/a:');
  fails(t, ['lowerdir=:/a'], 'empty directory in lowerdir=:/a');
});

test('no lowerdir at all is an error', (t) => {
  fails(t, [], 'missing lowerdir= option (e.g. -o lowerdir=/top:/base)');
  fails(t, ['ro,allow_other'], 'missing lowerdir= option (e.g. -o lowerdir=/top:/base)');
});

test('unknown options are errors naming the option as given', (t) => {
  fails(t, ['lowerdir=/l,frobnicate'], 'unknown option: frobnicate');
  fails(t, ['lowerdir=/l,frob=1'], 'unknown option: frob=1');
  fails(t, ['lowerdir=/l,Lowerdir=/x'], 'unknown option: Lowerdir=/x');
  // A pass-through flag takes no value.
  fails(t, ['lowerdir=/l,nodev=1'], 'unknown option: nodev=1');
});

test('mount(8) flags pass through to FUSE; helper-only options and overlay tuning are accepted', (t) => {
  const o = parseOptions(['lowerdir=/l,nodev,noexec,nosuid,noatime,defaults,auto,nofail,_netdev,default_permissions,redirect_dir=on,index=off,metacopy=off,xino=auto,nfs_export=off,uuid=null']);
  t.deepEqual(o.fuseOptions, ['nodev', 'noexec', 'nosuid', 'noatime']);
  t.deepEqual(o.lowers, ['/l']);
});

test('lower_ttl takes seconds; it bounds the kernel timeouts and swaps kernel_cache for auto_cache', async (t) => {
  t.is(parseOptions(['lowerdir=/l,lower_ttl=5']).lowerTtl, 5);
  t.is(parseOptions(['lowerdir=/l,lower_ttl=0.5']).lowerTtl, 0.5);
  t.is(parseOptions(['lowerdir=/l']).lowerTtl, undefined);
  for (const bad of ['lower_ttl=-1', 'lower_ttl=soon', 'lower_ttl=1e3', 'lower_ttl']) {
    t.throws(() => parseOptions([`lowerdir=/l,${bad}`]), { message: /lower_ttl/ }, bad);
  }
  const { fuseOptionsFor } = await import('../../src/server.js');
  const base = { lowers: ['/l'], mountpoint: '/m', readOnly: false, allowOther: false, fuseOptions: [] };
  const ro = fuseOptionsFor({ ...base, lowerTtl: 5 });
  t.true(ro.includes('entry_timeout=5') && ro.includes('attr_timeout=5') && ro.includes('negative_timeout=5'));
  t.true(ro.includes('auto_cache') && !ro.includes('kernel_cache'));
  const forever = fuseOptionsFor(base);
  t.true(forever.includes('kernel_cache') && forever.includes('entry_timeout=3600'));
});

test('the kernel opens files without asking only in a read-only union without lower_ttl, on Linux 5.1+ (D26)', async (t) => {
  const { kernelOpensWithoutAsking, openingFor } = await import('../../src/server.js');
  for (const r of ['5.1.0', '5.10.0-28-amd64', '6.1.0-18-amd64', '6.18.44-fc-v1272', '10.0.0']) t.true(kernelOpensWithoutAsking(r), r);
  for (const r of ['4.19.0-26-amd64', '5.0.21', '3.10.0-1160.el7.x86_64', '', 'unknown']) t.false(kernelOpensWithoutAsking(r), r);
  const base = { lowers: ['/l'], mountpoint: '/m', readOnly: false, allowOther: false, fuseOptions: [] };
  t.is(openingFor(base, '6.1.0'), 'kernel');
  t.is(openingFor({ ...base, upper: '/u', work: '/w', readOnly: true }, '6.1.0'), 'kernel', 'an upper served read-only');
  t.is(openingFor(base, '4.19.0'), 'union', 'an older kernel would take ENOSYS as a failed open');
  t.is(openingFor({ ...base, lowerTtl: 5 }, '6.1.0'), 'union', 'lower_ttl: pages must be dropped when a file changes');
  t.is(openingFor({ ...base, upper: '/u', work: '/w' }, '6.1.0'), 'union', 'a writable union copies files up');
});

test('a writable union lets the kernel keep directory attributes for 1 s (no longer than lower_ttl), files none (D25, D15)', async (t) => {
  const { dirAttrTimeoutFor, fuseOptionsFor } = await import('../../src/server.js');
  const base = { lowers: ['/l'], mountpoint: '/m', readOnly: false, allowOther: false, fuseOptions: [] };
  const rw = { ...base, upper: '/u', work: '/w' };
  t.is(dirAttrTimeoutFor(rw), 1);
  t.is(dirAttrTimeoutFor({ ...rw, lowerTtl: 0.25 }), 0.25);
  t.is(dirAttrTimeoutFor({ ...rw, lowerTtl: 30 }), 1);
  t.true(fuseOptionsFor(rw).includes('attr_timeout=0'), 'files: none');
  t.is(dirAttrTimeoutFor(base), undefined, 'read-only: the mount keeps everything (D6)');
  t.is(dirAttrTimeoutFor({ ...rw, readOnly: true }), undefined);
});

test('engine= picks who speaks FUSE; the kernel engine keeps in the kernel what the libfuse options kept', async (t) => {
  t.is(parseOptions(['lowerdir=/l,engine=libfuse']).engine, 'libfuse');
  t.is(parseOptions(['lowerdir=/l,engine=kernel']).engine, 'kernel');
  t.is(parseOptions(['lowerdir=/l']).engine, undefined);
  t.throws(() => parseOptions(['lowerdir=/l,engine=fast']), { message: /engine= takes kernel or libfuse/ });
  t.is(parseOptions(['lowerdir=/l,spin_us=0']).spinMicros, 0);
  t.is(parseOptions(['lowerdir=/l,spin_us=200']).spinMicros, 200);
  t.is(parseOptions(['lowerdir=/l']).spinMicros, undefined);
  for (const bad of ['-1', '1.5', '1001', 'x', '']) {
    t.throws(() => parseOptions([`lowerdir=/l,spin_us=${bad}`]), { message: bad === '' ? /spin_us needs a value/ : /spin_us= takes microseconds from 0 to 1000/ }, bad);
  }
  t.is(parseOptions(['lowerdir=/l,readahead=0']).readaheadKiB, 0);
  t.is(parseOptions(['lowerdir=/l,readahead=4096']).readaheadKiB, 4096);
  t.is(parseOptions(['lowerdir=/l']).readaheadKiB, undefined);
  for (const bad of ['-1', '1.5', '65537', '1M', '']) {
    t.throws(() => parseOptions([`lowerdir=/l,readahead=${bad}`]), { message: bad === '' ? /readahead needs a value/ : /readahead= takes KiB from 0 to 65536/ }, bad);
  }
  t.is(parseOptions(['lowerdir=/l,passthrough=off']).passthrough, false);
  t.is(parseOptions(['lowerdir=/l,passthrough=on']).passthrough, true);
  t.is(parseOptions(['lowerdir=/l']).passthrough, undefined);
  for (const bad of ['0', 'yes', '']) {
    t.throws(() => parseOptions([`lowerdir=/l,passthrough=${bad}`]), { message: bad === '' ? /passthrough needs a value/ : /passthrough= takes on or off/ }, bad);
  }
  const { kernelPolicyFor, mountOptionsFor } = await import('../../src/server.js');
  const base = { lowers: ['/l'], mountpoint: '/m', readOnly: false, allowOther: false, fuseOptions: ['nodev'] };
  const ro = kernelPolicyFor(base, '6.1.0');
  t.like(ro, { entrySec: 3600, attrSecFile: 3600, negativeSec: 3600, keepCache: true, cacheDirs: true, kernelOpens: true, posixAcl: true });
  t.like(kernelPolicyFor({ ...base, lowerTtl: 5 }, '6.1.0'), { entrySec: 5, attrSecDir: 5, negativeSec: 5, keepCache: false, kernelOpens: false, cacheSymlinks: false, posixAcl: false });
  t.like(kernelPolicyFor(base, '4.19.0'), { kernelOpens: false, cacheDirs: false });
  const rw = { ...base, upper: '/u', work: '/w' };
  t.like(kernelPolicyFor(rw, '6.1.0'), { entrySec: 3600, attrSecFile: 3600, attrSecDir: 3600, attrSecLinked: 0, negativeSec: 3600, keepCache: false, keepLowerPages: true, kernelOpens: false, posixAcl: true, passthrough: true });
  t.like(kernelPolicyFor({ ...rw, passthrough: false }, '6.1.0'), { passthrough: false });
  t.like(kernelPolicyFor({ ...rw, lowerTtl: 0.25 }, '6.1.0'), { entrySec: 0.25, attrSecDir: 0.25, negativeSec: 0.25, posixAcl: false });
  t.deepEqual(mountOptionsFor(base), ['fsname=layerfs', 'subtype=layerfs', 'default_permissions', 'nonempty', 'ro', 'nodev']);
  t.deepEqual(mountOptionsFor({ ...rw, allowOther: true }), ['fsname=layerfs', 'subtype=layerfs', 'default_permissions', 'nonempty', 'allow_other', 'nodev']);
});

test('the kernel engine is the default where the kernel speaks FUSE 7.28 (Linux 4.20) or newer', async (t) => {
  const { engineFor } = await import('../../src/server.js');
  const base = { lowers: ['/l'], mountpoint: '/m', readOnly: false, allowOther: false, fuseOptions: [] };
  t.is(engineFor(base, '6.1.0-18-amd64'), 'kernel');
  t.is(engineFor(base, '4.20.0'), 'kernel');
  t.is(engineFor(base, '4.19.0-26-amd64'), 'libfuse');
  t.is(engineFor({ ...base, engine: 'libfuse' }, '6.1.0'), 'libfuse');
  t.is(engineFor({ ...base, engine: 'kernel' }, '4.9.0'), 'kernel');
});

// D38: the mount's backing device is found in the mount table, never by a stat of the mountpoint
// (that would ask the server that is looking). The topmost FUSE mount at the path is the one.
test('fuseDeviceOf finds the device of the topmost FUSE mount at a path, escapes decoded', async (t) => {
  const { fuseDeviceOf } = await import('../../src/fuse/kernel/readahead.js');
  const info = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '40 22 0:35 / /mnt/a\\040b rw,nosuid - tmpfs tmpfs rw',
    '41 40 0:52 / /mnt/a\\040b rw,nosuid,nodev,relatime shared:9 - fuse.layerfs layerfs rw,user_id=0,group_id=0',
    '42 22 0:53 / /mnt/plain rw - fuse /dev/fuse rw,user_id=0',
    '43 41 0:54 / /mnt/a\\040b rw - fuse.layerfs layerfs rw,user_id=0',
    '',
  ].join('\n');
  t.is(fuseDeviceOf(info, '/mnt/a b'), '0:54', 'the last of two stacked FUSE mounts');
  t.is(fuseDeviceOf(info, '/mnt/plain'), '0:53', 'fstype fuse');
  t.is(fuseDeviceOf(info, '/'), undefined, 'not FUSE');
  t.is(fuseDeviceOf(info, '/mnt/a\\040b'), undefined, 'the escaped form is not the path');
  t.is(fuseDeviceOf(info, '/mnt'), undefined);
});
