// Asks Kafka's own Admin client about eligible leader replicas (KIP-966).
//   java -cp 'lib/*' DescribeElr.java BOOTSTRAP enable
//     finalizes eligible.leader.replicas.version 1 (no-op when already) and prints its level;
//   java -cp 'lib/*' DescribeElr.java BOOTSTRAP describe TOPIC
//     prints one line per partition: "<partition> isr=<ids> elr=<ids> lastKnownElr=<ids>"
//     (ids sorted, comma-separated, empty when none).

import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;

public class DescribeElr {
    static final String FEATURE = "eligible.leader.replicas.version";

    static String ids(List<Node> nodes) {
        return nodes.stream().map(Node::id).sorted().map(String::valueOf).collect(Collectors.joining(","));
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(props)) {
            if (args[1].equals("enable")) {
                admin.updateFeatures(
                        Map.of(FEATURE, new FeatureUpdate((short) 1, FeatureUpdate.UpgradeType.UPGRADE)),
                        new UpdateFeaturesOptions()).all().get();
                FinalizedVersionRange r = admin.describeFeatures().featureMetadata().get().finalizedFeatures().get(FEATURE);
                System.out.println(FEATURE + "=" + (r == null ? 0 : r.maxVersionLevel()));
                return;
            }
            String topic = args[2];
            Map<String, TopicDescription> d = admin.describeTopics(List.of(topic)).allTopicNames().get();
            for (TopicPartitionInfo p : d.get(topic).partitions()) {
                System.out.println(p.partition() + " isr=" + ids(p.isr()) + " elr=" + ids(p.elr())
                        + " lastKnownElr=" + ids(p.lastKnownElr()));
            }
        }
    }
}
