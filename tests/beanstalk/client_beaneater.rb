# The same session through Ruby's beaneater (Debian ruby-beaneater), printed one line per
# step with job ids left out: test_beanstalk_clients.py runs it against spoold and against
# beanstalkd and compares the output. Usage: ruby client_beaneater.rb PORT TUBE
require 'beaneater'

port, tube_name = ARGV
bs = Beaneater.new("127.0.0.1:#{port}")
tube = bs.tubes[tube_name]
say = ->(*words) { puts words.join(' ') }

r = tube.put('first', pri: 10, ttr: 30)
say.call('put', r[:status])
tube.put('urgent', pri: 1, ttr: 30)
tube.put('later', pri: 5, delay: 1, ttr: 30)
say.call('stats', tube.stats.current_jobs_ready, tube.stats.current_jobs_delayed)
say.call('peek-ready', tube.peek(:ready).body)
say.call('peek-delayed', tube.peek(:delayed).body)
bs.tubes.watch!(tube_name)
say.call('watched', bs.tubes.watched.map(&:name).join(','))
job = bs.tubes.reserve(1)
say.call('reserve', job.body, job.stats.pri, job.stats.state, job.stats.ttr, job.reserved?)
job.touch
job.release(pri: 20)
say.call('released', job.stats.state, job.stats.pri)
job = bs.tubes.reserve(1)
say.call('reserve', job.body)
job.bury
say.call('buried', job.stats.state, tube.stats.current_jobs_buried)
say.call('kick', tube.kick(10)[:status])
job = bs.tubes.reserve(1)
say.call('reserve', job.body)
job.delete
say.call('deleted', job.exists?)
job = bs.tubes.reserve(1)
say.call('reserve', job.body)
job.delete
begin
  bs.tubes.reserve(0)
  say.call('reserve', 'unexpected')
rescue Beaneater::TimedOutError => e
  say.call('reserve', e.class.name)
end
begin
  bs.jobs.find(0) ? say.call('find', 'found') : say.call('find', 'nil')
rescue Beaneater::NotFoundError => e
  say.call('find', e.class.name)
end
job = bs.tubes.reserve(3) # the delayed one, once its second is over
say.call('reserve', job.body, job.stats.delay.to_s.empty? ? 'no-delay' : 'delay')
job.delete
tube.pause(1)
say.call('paused', tube.stats.pause)
say.call('tubes', bs.tubes.all.map(&:name).include?(tube_name))
say.call('used', bs.tubes.used.name == 'default')
bs.close
