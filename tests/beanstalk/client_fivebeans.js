// The same kind of session through Node's fivebeans (npm, tests/beanstalk/package-lock.json),
// printed one line per step without job ids: test_beanstalk_clients.py compares spoold's
// output with beanstalkd's. Usage: node client_fivebeans.js PORT TUBE
'use strict';
const fivebeans = require('fivebeans');

const [port, tube] = process.argv.slice(2);
const client = new fivebeans.client('127.0.0.1', Number(port));

// fivebeans answers (err, ...results): a promise of [err word or null, ...results].
function call(method, ...args) {
  return new Promise((resolve) => {
    client[method](...args, (err, ...results) => resolve([err ? String(err) : null, ...results]));
  });
}

async function session() {
  const say = (...words) => console.log(words.join(' '));
  say('use', ...(await call('use', tube)));
  const [, id1] = await call('put', 10, 0, 30, 'alpha');
  const [, id2] = await call('put', 2, 0, 0, 'beta');
  say('put', typeof id1, id1 !== id2);
  say('watch', ...(await call('watch', tube)));
  say('ignore', ...(await call('ignore', 'default')));
  say('ignore-last', ...(await call('ignore', tube)));
  let [err, id, payload] = await call('reserve_with_timeout', 1);
  say('reserve', err, id === id2, String(payload));
  const [, st] = await call('stats_job', id);
  say('stats-job', st.state, st.pri, st.ttr, st.tube === tube);
  say('touch', ...(await call('touch', id)));
  say('release', ...(await call('release', id, 1, 0)));
  [err, id, payload] = await call('reserve');
  say('reserve', err, String(payload));
  say('bury', ...(await call('bury', id, 5)));
  [err, id, payload] = await call('peek_buried');
  say('peek-buried', err, String(payload));
  say('kick-job', ...(await call('kick_job', id)));
  say('destroy', ...(await call('destroy', id)));
  say('destroy-again', ...(await call('destroy', id)));
  [err, id, payload] = await call('reserve');
  say('reserve', err, String(payload));
  say('destroy', ...(await call('destroy', id)));
  say('reserve-timeout', ...(await call('reserve_with_timeout', 0)));
  const [, ts] = await call('stats_tube', tube);
  say('stats-tube', ts.name === tube, ts['current-jobs-ready'], ts['total-jobs']);
  const [, watched] = await call('list_tubes_watched');
  say('watched', JSON.stringify(watched));
  say('used', ...(await call('list_tube_used')));
  say('pause', ...(await call('pause_tube', tube, 0)));
  say('peek-missing', ...(await call('peek', 1)));
  const [, stats] = await call('stats');
  say('stats', typeof stats['current-connections'], 'cmd-put' in stats);
  client.end();
}

client.on('connect', () => {
  session().catch((e) => {
    console.log('error', e);
    process.exit(1);
  });
}).on('error', (e) => {
  console.log('connection error', e);
  process.exit(1);
}).connect();
